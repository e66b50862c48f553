// Package pki is Ganglion's certificate authority and TLS plumbing: it issues node, admin and
// read-only certificates that carry their role and name in a URI SAN, builds TLS configurations
// for the brain and its clients, and re-reads certificate files when they change, so rotation
// needs no restart. Everything here is the standard library's crypto; nothing is home-made.
package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Role is what a certificate's holder may do.
type Role string

const (
	// RoleNode is an agent: it may open its own node's stream and nothing else.
	RoleNode Role = "node"
	// RoleAdmin is an operator who may change the store (Apply, Delete) and read everything.
	RoleAdmin Role = "admin"
	// RoleReader is an operator who may read (Get, inspect) but change nothing.
	RoleReader Role = "reader"
	// RoleServer is a brain's serving certificate; it grants nothing to a client.
	RoleServer Role = "server"
)

// uriScheme is the scheme of the identity URI SAN: ganglion://<role>/<name>.
const uriScheme = "ganglion"

// ParseRole reads a role by name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleNode, RoleAdmin, RoleReader, RoleServer:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want node, admin, reader or server", s)
}

// IdentityURI is the URI SAN that names role and name, e.g. ganglion://node/edge-1.
func IdentityURI(role Role, name string) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: string(role), Path: "/" + name}
}

// ErrNoIdentity means a certificate carries no Ganglion identity.
var ErrNoIdentity = errors.New("certificate has no ganglion:// identity")

// IdentityOf returns the role and name a certificate's single Ganglion URI SAN names. A
// certificate with none, or with more than one, names nobody.
func IdentityOf(cert *x509.Certificate) (Role, string, error) {
	var found *url.URL
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		if found != nil {
			return "", "", fmt.Errorf("certificate has more than one ganglion:// identity")
		}
		found = u
	}
	if found == nil {
		return "", "", ErrNoIdentity
	}
	role, err := ParseRole(found.Host)
	if err != nil {
		return "", "", err
	}
	name := strings.TrimPrefix(found.Path, "/")
	if err := ValidName(name); err != nil {
		return "", "", err
	}
	return role, name, nil
}

// ValidName checks an identity's name: a node name or an operator's name, as DNS-1123 subdomains
// are (lowercase letters, digits, '-' and '.', at most 253 characters).
func ValidName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("name %q: must be 1 to 253 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("name %q: only lowercase letters, digits, '-' and '.'", name)
		}
	}
	return nil
}

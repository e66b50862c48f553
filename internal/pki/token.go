package pki

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc/credentials"
)

// TokenFile sends the bearer token in a file with every call, re-reading the file when it
// changes: the kubelet rotates a projected ServiceAccount token in place well before it expires.
type TokenFile struct {
	path string

	mu    sync.Mutex
	stamp fileStamp
	token string
}

// NewTokenFile reads path; it must hold a token now.
func NewTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{path: path}
	if _, err := t.current(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *TokenFile) current() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, err := stampOf(t.path)
	if err != nil {
		if t.token != "" {
			return t.token, nil
		}
		return "", fmt.Errorf("token file: %w", err)
	}
	if t.token != "" && st == t.stamp {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		if t.token != "" {
			return t.token, nil
		}
		return "", errors.New("token file " + t.path + " is empty")
	}
	t.token, t.stamp = tok, st
	return tok, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t *TokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.current()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a token never travels in
// plaintext.
func (t *TokenFile) RequireTransportSecurity() bool { return true }

var _ credentials.PerRPCCredentials = (*TokenFile)(nil)

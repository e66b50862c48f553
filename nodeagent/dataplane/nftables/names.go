package nftables

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Object kinds prefix every per-port chain and set name. The base follows the first underscore,
// so a restarted agent can tell which port owns an object by its name alone.
const (
	kindInternal = "int" // traffic to ClusterIP frontends
	kindExternal = "ext" // traffic to NodePort, load-balancer and external IP frontends
	kindCluster  = "cl"  // endpoint choice over the cluster set
	kindLocal    = "lo"  // endpoint choice over the local set
	kindFirewall = "fw"  // LB source ranges, one chain per frontend index: fw0, fw1, ...
	kindAffinity = "aff" // one backend's timed set of clients: affcl<backend>, afflo<backend>
	kindBackend  = "b"   // one backend of a set with affinity: bcl<backend>, blo<backend>
)

// backendTag names a backend inside kind names: its address and port in hex. It is derived from
// the backend alone, so a backend keeps its chain and its clients' set while others come and go,
// and two backends of one port never share a name.
func backendTag(f *family, b backend) string {
	return hex.EncodeToString(append(f.addr(b.addr), padPort(b.port)[:2]...))
}

// maxNameLen is the kernel's NFT_NAME_MAXLEN minus the terminating NUL.
const maxNameLen = 255

// objectName names a per-port chain or set. nft's parser accepts only [a-zA-Z0-9/_.-] in bare
// identifiers, so ':' becomes '.' and anything else outside that alphabet is escaped as _XX;
// keeping names parseable by nft keeps `nft list` and `nft -f` usable for debugging.
func objectName(kind, base string) (string, error) {
	var b strings.Builder
	b.Grow(len(kind) + 1 + len(base))
	b.WriteString(kind)
	b.WriteByte('_')
	for i := 0; i < len(base); i++ {
		c := base[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '/', c == '-':
			b.WriteByte(c)
		case c == ':':
			b.WriteByte('.')
		default:
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	if b.Len() > maxNameLen {
		return "", fmt.Errorf("%w: %q gives a %d-byte name", ErrNameTooLong, base, b.Len())
	}
	return b.String(), nil
}

// parseObjectName is objectName's inverse; ok is false for names this package did not make.
func parseObjectName(name string) (kind, base string, ok bool) {
	kind, enc, found := strings.Cut(name, "_")
	if !found || !isPortKind(kind) {
		return "", "", false
	}
	var b strings.Builder
	for i := 0; i < len(enc); i++ {
		switch c := enc[i]; c {
		case '.':
			b.WriteByte(':')
		case '_':
			if i+2 >= len(enc) {
				return "", "", false
			}
			var v byte
			if _, err := fmt.Sscanf(enc[i+1:i+3], "%02x", &v); err != nil {
				return "", "", false
			}
			b.WriteByte(v)
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return kind, b.String(), true
}

func isPortKind(kind string) bool {
	switch kind {
	case kindInternal, kindExternal, kindCluster, kindLocal:
		return true
	case kindAffinity + kindCluster, kindAffinity + kindLocal:
		// One map per set, as earlier versions made: still recognized, so that adopting such a
		// table replaces them.
		return true
	}
	if rest, ok := strings.CutPrefix(kind, kindFirewall); ok && rest != "" {
		return isDigits(rest)
	}
	// Backend tags are hex; earlier versions numbered backends in decimal, which is hex too.
	for _, prefix := range []string{kindBackend + kindCluster, kindBackend + kindLocal, kindAffinity + kindCluster, kindAffinity + kindLocal} {
		if rest, ok := strings.CutPrefix(kind, prefix); ok && rest != "" {
			return isHex(rest)
		}
	}
	return false
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

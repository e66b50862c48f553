package nftables

import (
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
	kindAffinity = "aff" // session affinity map, suffixed with the set kind: affcl, afflo
	kindBackend  = "b"   // one backend of a set with affinity: bcl0, bcl1, blo0, ...
)

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
	case kindInternal, kindExternal, kindCluster, kindLocal, kindAffinity + kindCluster, kindAffinity + kindLocal:
		return true
	}
	for _, prefix := range []string{kindFirewall, kindBackend + kindCluster, kindBackend + kindLocal} {
		if rest, ok := strings.CutPrefix(kind, prefix); ok && rest != "" {
			return isDigits(rest)
		}
	}
	return false
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Package announceconfig reads the brain's announcement settings (--announce-config): which
// outside addresses nodes make the network send to them, over ARP/NDP (l2) and BGP, and each
// node group's BGP peering. It is the one reader of that file's format.
package announceconfig

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// File is the file's format.
type File struct {
	// L2 has one owner node per address answer ARP/NDP for it.
	L2 bool `json:"l2,omitempty"`
	// BGP has every eligible node advertise a host route to its group's peers.
	BGP *BGP `json:"bgp,omitempty"`
	// ExternalIPs announces spec.externalIPs too (default true).
	ExternalIPs *bool `json:"externalIPs,omitempty"`
	// LoadBalancerClasses and Pools limit what is announced (required in Kubernetes mode, so
	// that another announcer's addresses are never fought over): an address is announced when
	// its service's loadBalancerClass is listed or it lies in a pool.
	LoadBalancerClasses []string `json:"loadBalancerClasses,omitempty"`
	Pools               []string `json:"pools,omitempty"`
}

// BGP is the peering of node groups.
type BGP struct {
	Groups []Group `json:"groups"`
}

// Group is the peering of the nodes whose labels match NodeSelector (all nodes when empty); a
// node takes the first group it matches.
type Group struct {
	NodeSelector           map[string]string `json:"nodeSelector,omitempty"`
	LocalASN               uint32            `json:"localASN"`
	RouterID               string            `json:"routerID,omitempty"`
	Communities            []string          `json:"communities,omitempty"`
	GracefulRestartSeconds *uint32           `json:"gracefulRestartSeconds,omitempty"`
	Peers                  []Peer            `json:"peers"`
}

// Peer is one router.
type Peer struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	Port    uint32 `json:"port,omitempty"`
	// Password or PasswordFile (read when the brain starts) is the TCP MD5 key.
	Password        string `json:"password,omitempty"`
	PasswordFile    string `json:"passwordFile,omitempty"`
	HoldTimeSeconds uint32 `json:"holdTimeSeconds,omitempty"`
}

// DefaultGracefulRestartSeconds is how long peers keep a restarting agent's routes.
const DefaultGracefulRestartSeconds = 120

// Load reads path. bareMetal announces the services' VIPs (their cluster IPs) and needs no
// class or pool; in Kubernetes mode one of them is required.
func Load(path string, bareMetal bool) (compute.AnnounceOptions, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return compute.AnnounceOptions{}, fmt.Errorf("--announce-config: %w", err)
	}
	opts, err := Parse(b, bareMetal)
	if err != nil {
		return compute.AnnounceOptions{}, fmt.Errorf("--announce-config %s: %w", path, err)
	}
	return opts, nil
}

// Parse reads the file's content; see Load.
func Parse(b []byte, bareMetal bool) (compute.AnnounceOptions, error) {
	var f File
	if err := yaml.UnmarshalStrict(bytes.TrimSpace(b), &f); err != nil {
		return compute.AnnounceOptions{}, err
	}
	o := compute.AnnounceOptions{L2: f.L2, BGP: f.BGP != nil, ClusterIPs: bareMetal, ExternalIPs: f.ExternalIPs == nil || *f.ExternalIPs,
		Classes: f.LoadBalancerClasses}
	for i, p := range f.Pools {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return o, fmt.Errorf("pools[%d]: %q: not a CIDR", i, p)
		}
		o.Pools = append(o.Pools, pfx.Masked())
	}
	for i, c := range f.LoadBalancerClasses {
		if errs := validation.IsQualifiedName(c); len(errs) > 0 {
			return o, fmt.Errorf("loadBalancerClasses[%d]: %q: %s", i, c, strings.Join(errs, "; "))
		}
	}
	if !bareMetal && len(o.Classes) == 0 && len(o.Pools) == 0 && (o.L2 || o.BGP) {
		return o, fmt.Errorf("loadBalancerClasses, pools: Kubernetes mode announces only the addresses of a listed loadBalancerClass or pool, and neither is set")
	}
	if f.BGP != nil {
		if len(f.BGP.Groups) == 0 {
			return o, fmt.Errorf("bgp.groups: at least one group is needed")
		}
		for i, g := range f.BGP.Groups {
			conf, err := g.config()
			if err != nil {
				return o, fmt.Errorf("bgp.groups[%d].%w", i, err)
			}
			o.BGPGroups = append(o.BGPGroups, compute.BGPGroup{Selector: g.NodeSelector, Config: conf})
		}
	}
	return o, nil
}

func (g Group) config() (*v1.BGPConfig, error) {
	if g.LocalASN == 0 {
		return nil, fmt.Errorf("localASN: 0 is not an AS number")
	}
	if g.RouterID != "" {
		if ip, err := netip.ParseAddr(g.RouterID); err != nil || !ip.Is4() {
			return nil, fmt.Errorf("routerID: %q: not an IPv4 address", g.RouterID)
		}
	}
	if len(g.Peers) == 0 {
		return nil, fmt.Errorf("peers: at least one peer is needed")
	}
	gr := uint32(DefaultGracefulRestartSeconds)
	if g.GracefulRestartSeconds != nil {
		gr = *g.GracefulRestartSeconds
	}
	if gr > 4095 { // the capability's 12-bit field
		return nil, fmt.Errorf("gracefulRestartSeconds: %d: at most 4095", gr)
	}
	conf := &v1.BGPConfig{LocalAsn: g.LocalASN, RouterId: g.RouterID, Communities: g.Communities, GracefulRestartSeconds: gr}
	for i, c := range g.Communities {
		if err := checkCommunity(c); err != nil {
			return nil, fmt.Errorf("communities[%d]: %q: %w", i, c, err)
		}
	}
	for i, p := range g.Peers {
		peer, err := p.peer()
		if err != nil {
			return nil, fmt.Errorf("peers[%d].%w", i, err)
		}
		conf.Peers = append(conf.Peers, peer)
	}
	return conf, nil
}

func (p Peer) peer() (*v1.BGPPeer, error) {
	if _, err := netip.ParseAddr(p.Address); err != nil {
		return nil, fmt.Errorf("address: %q: not an IP address", p.Address)
	}
	if p.ASN == 0 {
		return nil, fmt.Errorf("asn: 0 is not an AS number")
	}
	if p.Port > 65535 {
		return nil, fmt.Errorf("port: %d: not a port", p.Port)
	}
	if p.HoldTimeSeconds != 0 && (p.HoldTimeSeconds < 3 || p.HoldTimeSeconds > 65535) {
		return nil, fmt.Errorf("holdTimeSeconds: %d: 0 (90 s) or 3 to 65535 (RFC 4271)", p.HoldTimeSeconds)
	}
	password := p.Password
	if p.PasswordFile != "" {
		if password != "" {
			return nil, fmt.Errorf("passwordFile: set with password; give one")
		}
		b, err := os.ReadFile(p.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("passwordFile: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if len(password) > 80 { // TCP_MD5SIG_MAXKEYLEN
		return nil, fmt.Errorf("password: longer than 80 bytes, the kernel's limit")
	}
	return &v1.BGPPeer{Address: p.Address, Asn: p.ASN, Port: p.Port, Password: password, HoldTimeSeconds: p.HoldTimeSeconds}, nil
}

// checkCommunity accepts a standard community "asn:value" (16 bits each) or a large one
// "global:local1:local2" (32 bits each).
func checkCommunity(c string) error {
	parts := strings.Split(c, ":")
	bits := 16
	switch len(parts) {
	case 2:
	case 3:
		bits = 32
	default:
		return fmt.Errorf("want asn:value or global:local1:local2")
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, bits); err != nil {
			return fmt.Errorf("%q is not a %d-bit number", p, bits)
		}
	}
	return nil
}

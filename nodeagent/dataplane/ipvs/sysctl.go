package ipvs

import (
	"fmt"
	"os"
	"path/filepath"
)

// sysctls are the kernel settings the backend needs, with why:
//   - vs/conntrack=1: IPVS keeps conntrack entries, so nftables can masquerade its traffic;
//   - vs/expire_nodest_conn=1: packets of a connection whose real server was deleted expire it
//     instead of being dropped forever;
//   - vs/expire_quiescent_template=1: persistence templates of a weight-0 (draining) real server
//     expire, so affinity stops pinning new connections to it.
var sysctls = map[string]string{
	"net/ipv4/vs/conntrack":                 "1",
	"net/ipv4/vs/expire_nodest_conn":        "1",
	"net/ipv4/vs/expire_quiescent_template": "1",
}

// strictARPSysctls stop the node from answering ARP for service addresses held on the dummy
// device, as MetalLB-style L2 announcers need.
var strictARPSysctls = map[string]string{
	"net/ipv4/conf/all/arp_ignore":   "1",
	"net/ipv4/conf/all/arp_announce": "2",
}

func writeSysctls(root string, kv map[string]string) error {
	for k, v := range kv {
		p := filepath.Join(root, k)
		cur, err := os.ReadFile(p)
		if err == nil && string(cur) == v+"\n" {
			continue
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
		}
	}
	return nil
}

// Package nftables is the nftables dataplane backend: it programs the ports the brain resolved for
// this node into one table per family, "ip ganglion" and "ip6 ganglion", and never touches
// another table.
//
// # Ruleset
//
// Skeleton, created once per table (see skeleton.go):
//
//	nat-prerouting, nat-output  (nat, dstnat)   jump services
//	services                    ip daddr . meta l4proto . th dport vmap @frontend-ips
//	                            ip daddr @nodeport-addrs meta l4proto . th dport vmap @node-ports
//	nat-postrouting (srcnat)    jump masquerading: marked packets, and hairpin (saddr . daddr in
//	                            @hairpin-pairs) are masqueraded
//	filter-input/forward/output ct state new: reject packets marked for reject, and packets still
//	                            addressed to a ClusterIP after DNAT (unknown ports)
//	endpoints-00 ... -ff        interval maps: endpoint set id . slot → backend address . port
//
// Per port (names carry the port's base, so a restarted agent knows what it owns):
//
//	int_<base>   ClusterIP traffic: masquerade sources outside the pod CIDRs, goto the set
//	             the internal policy names
//	ext_<base>   NodePort/LB/external IP traffic: short-circuit from this host (masqueraded)
//	             and its pods to the cluster set; masquerade if the policy says so; goto the set
//	fw<i>_<base> LB source ranges of frontend i, then drop
//	cl_<base>, lo_<base>  the cluster and local set: dnat to numgen random mod 4096 offset
//	             id<<12 map @endpoints-xx, then drop (DROP sets) or mark for reject
//	affcl_<base>, bcl<i>_<base>  with ClientIP affinity: a timed map client → backend and a
//	             chain per backend that records itself
//
// Endpoint choice draws one of 4096 slots; backends own intervals of slots in proportion to
// their weights. A change of endpoints is therefore a change of map elements only: no rule is
// rewritten, which would make the kernel re-validate the whole table.
//
// # Transactions
//
// The backend keeps what it believes the kernel holds (kernelState) and each Apply sends one
// netlink transaction of only the differences, ordered make-before-break; it never lists the
// table. If the kernel refuses a transaction, each port is retried alone so one bad port fails
// alone. New and Reconcile read the table back (rule comments carry a hash of each rule, and the
// endpoint set id) and repair differences in one transaction; nothing is flushed, so established
// connections and affinity entries survive a restart.
//
// # Library choice, measured
//
// google/nftables (netlink from Go, one lasting socket with buffers sized per transaction) over
// sigs.k8s.io/knftables (which runs the nft binary), measured in a network namespace on this
// project's machine (kernel 6.18, nft 1.0.6) by BenchmarkNFTLibraryChoice and BenchmarkNFT:
//
//	one small transaction (add or delete one element), 100 services:
//	    google/nftables 15 µs, knftables 16,000 µs (process start and parsing dominate)
//	full sync of 10,000 services / 100,000 endpoints in one transaction:
//	    google/nftables 3.6 s, nft -f of the same ruleset 6.3 s
//
// knftables' cost per transaction is three orders of magnitude above the kernel's; with it a
// single endpoint change could never be cheap.
//
// # What the kernel costs (measured, 6.18)
//
// Every commit walks every chain of the netns: one element added to a hash set costs 7 µs with
// 20,000 rules or elements in the table but 450 µs with 20,000 chains. This backend has about two
// chains per service port, so an endpoint change costs about 0.1 ms with 100 services and 0.5 ms
// with 10,000 (BenchmarkNFT's apply_ratio). Only a ruleset whose chain count does not grow with
// services can make that ratio flat; see the report of issue 4.
package nftables

// Package nftables is the nftables dataplane backend: it programs the ports the brain resolved for
// this node into one table per family, "ip ganglion" and "ip6 ganglion", and never touches
// another table. Construct it with New(node, WithNetNS(fd)) (the option is for tests and for
// agents that program another namespace).
//
// # Ruleset
//
//	nat-prerouting, nat-output  (nat, dstnat)   jump services
//	services                    masquerade ClusterIP traffic from outside the pod CIDRs;
//	                            vmap @frontend-ips / @node-ports (ports with chains, below);
//	                            then per frontend space (fe: address . proto . port, np: proto .
//	                            port on @nodeport-addrs): the short-circuit classes for traffic
//	                            from this host (masqueraded) or its pods, the masquerade set, and
//	                            the classes: fe-k<k> goto pick-fe-k<k>, fe-drop, fe-reject
//	pick-<space>[-sc]-k<k>      dnat to <frontend key> . numgen random mod k map @<space>[-sc]-ep
//	nat-postrouting (srcnat)    masquerade marked packets, and hairpin (@hairpin-pairs)
//	filter-input/forward/output ct state new: reject what a port marked for reject, and what is
//	                            still addressed to a ClusterIP after DNAT (unknown ports)
//
// A port is elements of those sets, each commented with the port's base: its frontends in the
// class sets, its slots (backends repeated by weight) in the endpoint maps, its ClusterIPs and
// endpoints in the reject and hairpin sets. Shared chains exist per forwarding class in use
// (slot count k), so the number of chains does not grow with the number of ports.
//
// Ports with ClientIP session affinity or LB source ranges keep chains of their own, reached
// through the frontend-ips and node-ports verdict maps: int/ext/fw<i>/cl/lo_<base>. With affinity,
// each backend has a chain bcl<backend>_<base> and a timed set affcl<backend>_<base> of the clients
// sent to it (<backend> is its address and port in hex), as kube-proxy keeps one per endpoint: the
// set chain sends a client found in a backend's set to that backend's chain, which refreshes the
// entry and DNATs; other clients are spread over those chains by numgen. A backend that leaves
// takes its set with it, so only its own clients choose again. Without affinity, endpoint choice
// draws slots of endpoints-00..0f, interval maps keyed by set id . slot.
//
// # Transactions: plan, then commit
//
// The backend keeps a view of what the kernel holds and sends each Apply as one netlink
// transaction over both families of only the differences, make before break; it never lists the
// table to apply. Planning is pure with respect to the view: the planner reads it and writes its
// changes into overlays of its own, and returns a Plan of typed operations (add/flush/delete
// chain, add/delete set, add rule, add/delete elements) whose String is nft syntax
// (Dataplane.PlanChange prints what an Apply would do). Commit sends the plan and, only once the
// kernel accepted it, makes the view what the plan left; a refused plan is dropped and the view
// is unchanged. If the kernel refuses a transaction, each port is retried alone, so one bad port
// fails alone. New and Reconcile dump the table (rule comments carry a hash of the rule, element
// comments the owning port) and repair differences in one transaction. Reconcile dumps only when
// nf_tables' ruleset generation moved by more than our own commits (drift.go: a quiet node's pass
// is one netlink round trip), reads without the apply lock, and gives way to a change waiting
// for it; its cost and findings are dataplane.ReconcileMetrics. Nothing is flushed:
// established connections and affinity entries survive a restart, and a restarted agent that
// re-applies what the table holds sends nothing. Prune deletes ports an earlier run left. UDP
// conntrack entries to a backend that left, or to a port that gained its first backend, are
// deleted after the commit.
//
// # Kernel seam
//
// Plans are committed, tables read back and conntrack entries deleted through a narrow
// interface (kernel.go): the netlink implementation (netlink.go, dump.go) and Fake, an in-memory
// nf_tables that applies the same operations with the kernel's refusals and dumps in `nft list
// table` syntax (WithFake). The script tests in testdata/script run Apply, Prune and Reconcile
// over the fake without root; the network-namespace tests are the proof on a real kernel.
//
// # Why no chains per port (measured on this project's machine, kernel 6.18)
//
// Every commit costs the kernel time per chain in the netns: adding one element to a hash set
// takes 7 µs in a table of 20,000 rules or elements, and 450 µs in a table of 20,000 chains. Any
// rule added also makes it re-validate the whole table (4 ms with 3,000 services), and named
// sets are found by a linear search (about 30 ns per set). With chains per port, one endpoint
// change cost 0.11 ms with 100 services and 0.56 ms with 10,000 (ratio 5); with this layout it
// costs the same at both sizes (BENCH apply_ratio about 1.0), because it changes only elements of
// sets created first.
//
// # Library choice, measured
//
// google/nftables (netlink from Go, one lasting socket whose buffers are sized per transaction)
// over sigs.k8s.io/knftables (which runs the nft binary), measured in a network namespace by
// BenchmarkNFTLibraryChoice and BenchmarkNFT:
//
//	one small transaction (add or delete one element), 100 services:
//	    google/nftables 15 µs, knftables 16,000 µs (process start and parsing dominate)
//	full sync of 10,000 services / 100,000 endpoints from an empty namespace (medians of 7):
//	    google/nftables 1.7-2.6 s, nft -f of an expert's script (elements inside each set's
//	    definition) 1.5-2.4 s: the full sync is 10-25% slower than nft -f, the user-space cost
//	    of our transaction building (BENCH fullsync_vs_nft, 2026-12-01)
//
// knftables' fixed cost per transaction is a thousand times the kernel's work for an endpoint
// change; with it no single change could be cheap. A full sync is rare (agent start); changes
// are what a proxy does all day.
package nftables

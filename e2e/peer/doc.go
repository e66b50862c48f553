// Package peer measures Ganglion beside upstream kube-proxy (nftables mode), side by side against
// one real kube-apiserver (make bench-peer): each proxy runs in its own network-namespace node,
// and one EndpointSlice write is seen by both, so every change is a paired sample. The time of a
// change is read the same way for both: from the API write until an nftables notification in
// that node's namespace carries the new address (Monitor), which the kernel sends when the
// transaction that programs it commits.
//
// The harness is TestPeer (peer_test.go), run only with GANGLION_BENCH_PEER=1. The pure parts
// (netlink message scanning, /proc parsing, statistics, the lines and table) are tested without
// root.
package peer

// Package ipvs is the IPVS dataplane: one IPVS virtual server per service frontend (ClusterIP,
// externalIP, load-balancer IP, NodePort on each node address), its endpoints as real servers,
// the service addresses on a dummy device the package owns, and the netfilter half (masquerade,
// DROP, REJECT, source ranges) in an nftables table of its own.
//
// What it does differently from kube-proxy's IPVS mode, on purpose:
//   - external traffic of an ETP Local port with no local endpoint is dropped, never forwarded to
//     remote endpoints without SNAT;
//   - a change to one endpoint costs a handful of netlink operations (one per frontend of that
//     port), never a dump, and nftables is touched only when frontends or verdicts change;
//   - a dump that fails leaves the kernel state "unknown": nothing is deleted because of it;
//   - a restarted agent adopts the virtual servers it owns instead of flushing them, so
//     established connections survive;
//   - drift repair (drift.go) rewrites the nftables table only when someone else committed to
//     nftables, reads IPVS without the lock, and holds the lock one stage at a time.
//
// Structure: every change is planned, then committed. planApply (planner.go) is a pure function
// of the change and the view (view.go: what the kernel confirmed) to a Plan (ops.go) of typed
// nftables, IPVS and device operations, printable with String and from Dataplane.Plan; commit
// (commit.go) executes it and updates the view from the kernel's answers; planTidy then removes
// what the commit released. The kernel sits behind narrow seams with fakes: nftKernel
// (nftnetlink.go over google/nftables, nftfake.go in memory), ipvsHandle (ipvsgenl.go over our
// own generic-netlink codec, codec.go), addrDevice, flowCleaner. The agent runs no program.
//
// Ownership: a virtual server is ours when its address is on our dummy device or its
// protocol/address/port is a key of our nftables frontend map. The map is written before a
// virtual server is created and cleaned after it is deleted, so that rule survives a crash.
package ipvs

// Package compute turns the cluster model into each node's desired state, per
// ../shared/design/semantics.md. It does no I/O, starts no goroutines and reads no clock.
//
// The state of every node is kept in three layers of named resources: defaults that every node
// holds, overrides per zone, and overrides per node. A node's state is the defaults overlaid with its
// zone's overrides, then its own. Most services produce only defaults, so the memory and the work
// grow with services and endpoints, not with services times nodes.
package compute

// Package model is the source-agnostic picture of a cluster that the brain computes from: services,
// the endpoint slices that back them, and nodes. Kubernetes objects and the bare-metal store are
// both converted into it, so compute never sees where a fact came from.
//
// Values are treated as immutable once handed to the brain: a change is a new value.
package model

// Package file is a source of truth read from Kubernetes manifests on disk: a file or a directory
// of *.yaml files, re-read when it changes. It lets the brain run with no cluster and no store,
// for tests, demos and small static setups.
package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/kube"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
)

// Source reads manifests from Path every Interval (default 500ms).
type Source struct {
	Path     string
	Interval time.Duration
	Log      *slog.Logger

	last     [32]byte
	services map[model.ServiceKey]bool
	slices   map[model.SliceKey]bool
	nodes    map[string]bool
}

// Run loads the manifests into hub until ctx ends, calling synced after the first load. A load
// that fails (bad YAML, an invalid object) changes nothing: the last good manifests stay in force.
func (s *Source) Run(ctx context.Context, hub *stream.Hub, synced func()) error {
	if s.Interval == 0 {
		s.Interval = 500 * time.Millisecond
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	first := true
	for {
		changed, err := s.load(hub)
		switch {
		case err != nil && first:
			return err
		case err != nil:
			s.Log.Error("manifests not loaded; keeping the last good ones", "path", s.Path, "err", err)
		case changed:
			s.Log.Info("manifests loaded", "path", s.Path, "services", len(s.services), "slices", len(s.slices), "nodes", len(s.nodes))
		}
		if first {
			synced()
			first = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.Interval):
		}
	}
}

// read returns the manifests and their newest modification time, the revision: replicas reading
// the same files agree on it, and it only grows.
func (s *Source) read() ([]byte, uint64, error) {
	st, err := os.Stat(s.Path)
	if err != nil {
		return nil, 0, fmt.Errorf("manifests: %w", err)
	}
	files := []string{s.Path}
	if st.IsDir() {
		if files, err = filepath.Glob(filepath.Join(s.Path, "*.yaml")); err != nil {
			return nil, 0, err
		}
		slices.Sort(files)
	}
	var all bytes.Buffer
	var rev uint64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, 0, fmt.Errorf("manifests: %w", err)
		}
		if fi, err := os.Stat(f); err == nil {
			rev = max(rev, uint64(fi.ModTime().UnixNano()))
		}
		all.Write(b)
		all.WriteString("\n---\n")
	}
	return all.Bytes(), rev, nil
}

// load applies the manifests when their content changed: every object is set (unchanged ones
// compute to an empty delta) and objects that disappeared are deleted, in one hub change.
func (s *Source) load(hub *stream.Hub) (bool, error) {
	data, rev, err := s.read()
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(data)
	if sum == s.last && s.services != nil {
		return false, nil
	}
	objs, err := kube.DecodeManifests(s.Path, data)
	if err != nil {
		return false, err
	}
	services, sls, nodes := map[model.ServiceKey]bool{}, map[model.SliceKey]bool{}, map[string]bool{}
	hub.Apply(time.Now(), rev, func(e *compute.Engine) compute.Delta {
		var d compute.Delta
		for _, n := range objs.Nodes {
			nodes[n.Name] = true
			d.Merge(e.SetNode(n))
		}
		for _, sl := range objs.Slices {
			sls[sl.Key()] = true
			d.Merge(e.SetSlice(sl))
		}
		for _, svc := range objs.Services {
			services[svc.Key()] = true
			d.Merge(e.SetService(svc))
		}
		for k := range s.services {
			if !services[k] {
				d.Merge(e.DeleteService(k))
			}
		}
		for k := range s.slices {
			if !sls[k] {
				d.Merge(e.DeleteSlice(k))
			}
		}
		for n := range s.nodes {
			if !nodes[n] {
				d.Merge(e.DeleteNode(n))
			}
		}
		return d
	})
	s.last, s.services, s.slices, s.nodes = sum, services, sls, nodes
	return true, nil
}

package nftables

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
	"google.golang.org/protobuf/encoding/prototext"
	"sigs.k8s.io/yaml"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/kube"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

var update = flag.Bool("update", false, "rewrite the expected files of testdata/script/*.txtar")

// TestScripts runs every testdata/script/*.txtar against the fake kernel, without root. The
// archive's comment is the script, one command a line ('#' starts a comment); its files are
// inputs (updates in prototext, a node in YAML) and expected outputs. Commands:
//
//	start [node.yaml]      open the backend over the archive's fake kernel; again: a restart,
//	                       which forgets what was applied
//	apply update.txtpb     apply a v1.Update as the agent does: resources grouped into ports
//	! apply update.txtpb   the same, which the kernel must refuse for every port it upserts
//	kube in.yaml node      compute node's state from Kubernetes manifests, as the brain does,
//	                       and apply it as the node's whole state
//	plan update.txtpb want show the plan the update would commit, without committing it
//	prune                  remove every port the applied updates no longer hold
//	reconcile              read the tables back and repair them
//	nft <command>          change the fake kernel from outside (see Fake.Run)
//	messages <n>           the last transaction sent n netlink messages
//	dump [-all] want       the fake kernel holds exactly want; without -all, sets without elements
//	                       and the skeleton's chains as the skeleton has them are left out (the
//	                       services chain, which changes with the classes, is always shown)
//	conntrack want         the UDP conntrack deletions since the last check are want
//
// With -update, the expected files are rewritten from what the commands produce.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			s := &script{t: t, ar: ar, fake: NewFake(), held: map[string]*v1.Resource{}}
			defer s.close()
			for n, line := range strings.Split(string(ar.Comment), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					s.line = fmt.Sprintf("%s:%d: %s", filepath.Base(file), n+1, line)
					s.run(strings.Fields(line))
				}
			}
			if *update && s.changed {
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

type script struct {
	t       *testing.T
	ar      *txtar.Archive
	fake    *Fake
	d       *Dataplane
	held    map[string]*v1.Resource
	line    string
	changed bool
}

func (s *script) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s: %s", s.line, fmt.Sprintf(format, args...))
}

func (s *script) close() {
	if s.d != nil {
		s.d.Close()
	}
}

func (s *script) run(args []string) {
	s.t.Helper()
	if args[0] != "start" && s.d == nil {
		s.fatalf("the backend is not started")
	}
	ctx := context.Background()
	switch args[0] {
	case "start":
		s.start(args[1:])
	case "apply":
		s.need(args, 2)
		if errs := s.d.Apply(ctx, s.change(s.update(args[1]))); errs != nil {
			s.fatalf("Apply: %v", errs)
		}
	case "kube":
		s.need(args, 3)
		if errs := s.d.Apply(ctx, s.change(s.kube(args[1], args[2]))); errs != nil {
			s.fatalf("Apply: %v", errs)
		}
	case "!":
		s.refused(args[1:])
	case "plan":
		s.need(args, 3)
		p, errs := s.d.PlanChange(s.change(s.update(args[1])))
		if errs != nil {
			s.fatalf("PlanChange: %v", errs)
		}
		s.expect(args[2], p.String())
	case "prune":
		if err := s.d.Prune(ctx, s.bases()); err != nil {
			s.fatalf("Prune: %v", err)
		}
	case "reconcile":
		if err := s.d.Reconcile(ctx); err != nil {
			s.fatalf("Reconcile: %v", err)
		}
	case "nft":
		if err := s.fake.Run(strings.Join(args[1:], " ")); err != nil {
			s.fatalf("%v", err)
		}
	case "messages":
		s.need(args, 2)
		if want, err := strconv.Atoi(args[1]); err != nil || s.d.lastMessages != want {
			s.fatalf("the last transaction sent %d messages", s.d.lastMessages)
		}
	case "dump":
		s.dump(args[1:])
	case "conntrack":
		s.need(args, 2)
		s.expect(args[1], strings.Join(append(s.fake.Forgotten(), ""), "\n"))
	default:
		s.fatalf("unknown command %q", args[0])
	}
}

func (s *script) need(args []string, n int) {
	s.t.Helper()
	if len(args) != n {
		s.fatalf("%s takes %d arguments", args[0], n-1)
	}
}

func (s *script) file(name string) *txtar.File {
	s.t.Helper()
	for i := range s.ar.Files {
		if s.ar.Files[i].Name == name {
			return &s.ar.Files[i]
		}
	}
	if !*update {
		s.fatalf("no file %q in the archive", name)
	}
	s.ar.Files = append(s.ar.Files, txtar.File{Name: name})
	return &s.ar.Files[len(s.ar.Files)-1]
}

// expect compares got with the archive's file name, or rewrites the file under -update.
func (s *script) expect(name, got string) {
	s.t.Helper()
	f := s.file(name)
	if *update {
		if string(f.Data) != got {
			f.Data, s.changed = []byte(got), true
		}
		return
	}
	if string(f.Data) != got {
		s.fatalf("%s differs (run with -update to rewrite it, then read the diff)\n--- got:\n%s--- want:\n%s", name, got, f.Data)
	}
}

// scriptNode is a node as a script writes it in YAML.
type scriptNode struct {
	Name              string   `json:"name"`
	Addresses         []string `json:"addresses"`
	NodePortAddresses []string `json:"nodePortAddresses"`
	PodCIDRs          []string `json:"podCIDRs"`
}

func (s *script) start(args []string) {
	s.t.Helper()
	node := dataplane.Node{Name: "node1"}
	if len(args) == 1 {
		var sn scriptNode
		if err := yaml.UnmarshalStrict(s.file(args[0]).Data, &sn); err != nil {
			s.fatalf("node: %v", err)
		}
		node.Name = sn.Name
		for _, a := range sn.Addresses {
			node.Addresses = append(node.Addresses, netip.MustParseAddr(a))
		}
		for _, p := range sn.NodePortAddresses {
			node.NodePortAddresses = append(node.NodePortAddresses, netip.MustParsePrefix(p))
		}
		for _, p := range sn.PodCIDRs {
			node.PodCIDRs = append(node.PodCIDRs, netip.MustParsePrefix(p))
		}
	}
	s.close()
	s.held = map[string]*v1.Resource{} // a new agent knows nothing until told
	d, err := New(node, WithFake(s.fake))
	if err != nil {
		s.fatalf("New: %v", err)
	}
	s.d = d
}

// update reads a v1.Update and applies it to the held resources; it returns the bases it touched.
func (s *script) update(name string) []string {
	s.t.Helper()
	var u v1.Update
	if err := prototext.Unmarshal(s.file(name).Data, &u); err != nil {
		s.fatalf("%s: %v", name, err)
	}
	touched := map[string]bool{}
	for _, r := range u.Upserts {
		s.held[r.Name] = r
		base, _ := resname.Split(r.Name)
		touched[base] = true
	}
	for _, n := range u.Removals {
		delete(s.held, n)
		base, _ := resname.Split(n)
		touched[base] = true
	}
	return slices.Sorted(maps.Keys(touched))
}

// change turns touched bases into a change as the agent does: a base whose service is held is
// upserted whole, any other is removed.
func (s *script) change(bases []string) dataplane.Change {
	var c dataplane.Change
	for _, base := range bases {
		svc := s.held[resname.Join(base, resname.KindService)].GetService()
		if svc == nil {
			c.Removals = append(c.Removals, base)
			continue
		}
		c.Upserts = append(c.Upserts, dataplane.Port{Base: base, Service: svc,
			Cluster: s.held[resname.Join(base, resname.KindCluster)].GetEndpoints(),
			Local:   s.held[resname.Join(base, resname.KindLocal)].GetEndpoints()})
	}
	return c
}

// bases are the ports the held resources make.
func (s *script) bases() map[string]bool {
	keep := map[string]bool{}
	for name := range s.held {
		if base, kind := resname.Split(name); kind == resname.KindService {
			keep[base] = true
		}
	}
	return keep
}

func (s *script) dump(args []string) {
	s.t.Helper()
	if len(args) == 2 && args[0] == "-all" {
		s.expect(args[1], s.fake.Dump())
		return
	}
	if len(args) != 1 {
		s.fatalf("dump takes [-all] and a file")
	}
	s.expect(args[0], s.fake.dump(dumpOptions{hideEmpty: true, hideChain: s.asSkeleton}))
}

// asSkeleton reports whether a chain is one of the skeleton's, holding what the skeleton wants.
func (s *script) asSkeleton(f *family, name string, rules []string) bool {
	for _, c := range s.d.tables[f].skel.chains {
		if c.name == name && name != chainServices {
			want := make([]string, len(c.rules))
			for i, r := range c.rules {
				want[i] = r.text
			}
			return slices.Equal(want, rules)
		}
	}
	return false
}

// refused runs "apply" expecting the kernel to refuse every port of the update; the update is
// not held, as the agent keeps a refused port's previous resources.
func (s *script) refused(args []string) {
	s.t.Helper()
	if len(args) != 2 || args[0] != "apply" {
		s.fatalf("! takes apply and a file")
	}
	prev := maps.Clone(s.held)
	c := s.change(s.update(args[1]))
	errs := s.d.Apply(context.Background(), c)
	for _, p := range c.Upserts {
		if errs[p.Base] == nil {
			s.fatalf("the kernel took %s", p.Base)
		}
	}
	s.held = prev
}

// kube computes node's state from Kubernetes manifests with the brain's compute, makes it the
// held state, and returns the bases that changed.
func (s *script) kube(file, node string) []string {
	s.t.Helper()
	objs, err := kube.DecodeManifests(file, s.file(file).Data)
	if err != nil {
		s.fatalf("%s: %v", file, err)
	}
	e := compute.NewEngine(compute.Options{})
	objs.Load(e)
	touched := map[string]bool{}
	for name := range s.held {
		base, _ := resname.Split(name)
		touched[base] = true
	}
	s.held = map[string]*v1.Resource{}
	for _, r := range e.NodeState(node) {
		base, kind := resname.Split(r.Name)
		switch kind {
		case resname.KindService, resname.KindCluster, resname.KindLocal:
			s.held[r.Name] = r.GetMsg()
			touched[base] = true
		}
	}
	return slices.Sorted(maps.Keys(touched))
}

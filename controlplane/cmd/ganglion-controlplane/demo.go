package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/example"
	"github.com/ganglion-proxy/ganglion/controlplane/kube"
)

// runDemo computes a cluster from manifests, prints every node's state and a summary. It is the
// brain's compute with no source and no stream: what each agent would be sent.
func runDemo(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	file := fs.String("f", "", "Kubernetes manifests to compute instead of the built-in example")
	if err := fs.Parse(args); err != nil {
		return err
	}
	source, data := "built-in example", example.ClusterYAML
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("read manifests: %w", err)
		}
		source, data = *file, b
	}
	objs, err := kube.DecodeManifests(source, data)
	if err != nil {
		return err
	}
	start := time.Now()
	e := compute.NewEngine(compute.Options{})
	objs.Load(e)
	took := time.Since(start)

	fmt.Fprintf(out, "Ganglion brain on the %s: %d nodes, %d services, %d endpoint slices\n\n",
		source, len(objs.Nodes), len(objs.Services), len(objs.Slices))
	for _, s := range objs.Services {
		if why := compute.IgnoredReason(s, e.Options()); why != "" {
			fmt.Fprintf(out, "not proxied: %s (%s)\n", s.Key(), why)
		}
	}
	fmt.Fprintln(out)
	for _, n := range e.Nodes() {
		e.Render(out, n)
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "computed in %s: %d distinct resources, shared by all nodes except %s\n",
		took.Round(time.Microsecond), e.ResourceCount(), overridesSummary(e))
	return nil
}

func overridesSummary(e *compute.Engine) string {
	s := ""
	for i, n := range e.Nodes() {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d on %s", e.Overrides(n), n)
	}
	return s
}

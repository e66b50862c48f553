package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// describe prints the stored service, then, node by node, what traffic it forwards where and why
// each other endpoint is not used.
func (c *client) describe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("describe", flag.ContinueOnError)
	ns := fs.String("n", "default", "namespace")
	only := fs.String("node", "", "only this node")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || baremetal.NormalizeKind(pos[0]) != baremetal.KindService {
		return errors.New("describe service NAME")
	}
	name := pos[1]
	got, err := c.admin.Get(ctx, &v1.GetRequest{Selector: &v1.ObjectRef{Kind: baremetal.KindService, Namespace: *ns, Name: name}})
	if err != nil {
		return err
	}
	if len(got.Objects) == 0 {
		return fmt.Errorf("service %s/%s: not found", *ns, name)
	}
	fmt.Fprint(c.out, got.Objects[0].Content)
	nodes := []string{*only}
	if *only == "" {
		list, err := c.inspect.ListNodes(ctx, &v1.ListNodesRequest{})
		if err != nil {
			return err
		}
		nodes = nodes[:0]
		for _, n := range list.Nodes {
			nodes = append(nodes, n.Name)
		}
	}
	for _, n := range nodes {
		ex, err := c.inspect.ExplainService(ctx, &v1.ExplainServiceRequest{Node: n, Namespace: *ns, Name: name})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "\nnode %s:\n", n)
		for _, p := range ex.Ports {
			if p.IgnoredReason != "" {
				fmt.Fprintf(c.out, "  not proxied: %s\n", p.IgnoredReason)
				continue
			}
			fmt.Fprintf(c.out, "  %s\n    internal: %s\n", p.Resource, setString(p.Internal))
			if p.External != nil {
				fmt.Fprintf(c.out, "    external: %s\n", setString(p.External))
			}
			for _, e := range p.Endpoints {
				if e.Reason != "" {
					fmt.Fprintf(c.out, "    %s:%d  %s\n", e.Address, e.Port, e.Reason)
				}
			}
		}
	}
	return nil
}

func setString(s *v1.EndpointSet) string {
	parts := []string{strings.TrimPrefix(s.GetAction().String(), "TRAFFIC_ACTION_")}
	for _, b := range s.GetBackends() {
		parts = append(parts, fmt.Sprintf("%s:%d", b.Address, b.Port))
	}
	return strings.Join(parts, " ")
}

// nodes lists the brain's view of every node.
func (c *client) nodes(ctx context.Context) error {
	resp, err := c.inspect.ListNodes(ctx, &v1.ListNodesRequest{})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintln(w, "NAME\tZONE\tCONNECTED\tRESOURCES\tPENDING\tREJECTED\tLAG\tLAST ERROR")
	for _, n := range resp.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%v\t%d\t%d\t%d\t%.1fs\t%s\n", n.Name, or(n.Zone, "-"), n.Connected, n.Resources, n.Pending, n.Rejected, n.LagSeconds, or(n.LastError, "-"))
	}
	return nil
}

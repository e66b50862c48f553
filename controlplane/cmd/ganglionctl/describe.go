package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func (c *client) describeCmd() *cobra.Command {
	var all bool
	var node, output string
	cmd := &cobra.Command{
		Use:   "describe service [NAME...]",
		Short: "The stored service and, node by node, its frontends and which endpoints each kind of traffic uses and why not the others",
		Args:  cobra.MinimumNArgs(1),
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace instead of --namespace")
	cmd.Flags().StringVar(&node, "node", "", "only this node")
	outputFlag(cmd, &output)
	cmd.RunE = c.withBrain(func(ctx context.Context, args []string) error {
		if kind, err := kindArg(args[0]); err != nil || kind != baremetal.KindService {
			return errors.New("describe: only services can be described: describe service NAME")
		}
		ns := c.namespace
		if all {
			ns = ""
		}
		docs, err := c.getObjects(ctx, baremetal.KindService, ns, args[1:])
		if err != nil {
			return err
		}
		var out []described
		for _, d := range docs {
			one, err := c.describeOne(ctx, d, node)
			if err != nil {
				return err
			}
			out = append(out, one)
		}
		return printDescribed(c.out, output, out)
	})
	return cmd
}

// described is one service as describe prints it; its JSON form is describe -o json's.
type described struct {
	Object json.RawMessage `json:"object"`
	Nodes  []nodeView      `json:"nodes"`

	doc *v1.Document
}

// nodeView is what one node does with the service.
type nodeView struct {
	Node  string            `json:"node"`
	Zone  string            `json:"zone,omitempty"`
	Ports []json.RawMessage `json:"ports"`
	// Announcements are the service's outside addresses and what the node does for each.
	Announcements []json.RawMessage `json:"announcements,omitempty"`

	ports         []*v1.PortExplanation
	announcements []*v1.AddressAnnouncement
}

func (c *client) describeOne(ctx context.Context, d *v1.Document, only string) (described, error) {
	obj, err := yaml.YAMLToJSON([]byte(d.Content))
	if err != nil {
		return described{}, fmt.Errorf("%s: %w", d.Source, err)
	}
	k, _ := parseKey(d.Source)
	out := described{Object: obj, Nodes: []nodeView{}, doc: d}
	nodes, err := c.inspect.ListNodes(ctx, &v1.ListNodesRequest{})
	if err != nil {
		return described{}, err
	}
	found := false
	for _, n := range nodes.Nodes {
		if only != "" && n.Name != only {
			continue
		}
		found = true
		ex, err := c.inspect.ExplainService(ctx, &v1.ExplainServiceRequest{Node: n.Name, Namespace: k.Namespace, Name: k.Name})
		if err != nil {
			return described{}, fmt.Errorf("node %s: %w", n.Name, err)
		}
		nv := nodeView{Node: n.Name, Zone: n.Zone, Ports: []json.RawMessage{}, ports: ex.Ports, announcements: ex.Announcements}
		for _, p := range ex.Ports {
			b, err := protojson.Marshal(p)
			if err != nil {
				return described{}, err
			}
			nv.Ports = append(nv.Ports, b)
		}
		for _, a := range ex.Announcements {
			b, err := protojson.Marshal(a)
			if err != nil {
				return described{}, err
			}
			nv.Announcements = append(nv.Announcements, b)
		}
		out.Nodes = append(out.Nodes, nv)
	}
	if only != "" && !found {
		return described{}, fmt.Errorf("--node: node %q not found", only)
	}
	return out, nil
}

func printDescribed(w io.Writer, format string, all []described) error {
	var v any = all
	if len(all) == 1 {
		v = all[0]
	}
	if ok, err := printStructured(w, format, v); ok {
		return err
	}
	for i, d := range all {
		if i > 0 {
			fmt.Fprintln(w, "---")
		}
		fmt.Fprint(w, d.doc.Content)
		for _, n := range d.Nodes {
			fmt.Fprintf(w, "\nnode %s", n.Node)
			if n.Zone != "" {
				fmt.Fprintf(w, " (zone %s)", n.Zone)
			}
			fmt.Fprintln(w, ":")
			for _, p := range n.ports {
				printPort(w, p)
			}
			for _, a := range n.announcements {
				printAnnouncement(w, a)
			}
		}
	}
	return nil
}

func printPort(w io.Writer, p *v1.PortExplanation) {
	if p.IgnoredReason != "" {
		fmt.Fprintf(w, "  not proxied: %s\n", p.IgnoredReason)
		return
	}
	sp := p.Service
	fmt.Fprintf(w, "  %s %s\n", p.Resource, strings.TrimPrefix(sp.GetProtocol().String(), "PROTOCOL_"))
	fmt.Fprintf(w, "    frontends: %s\n", frontendsString(sp.GetFrontends()))
	fmt.Fprintf(w, "    scheduler: %s  affinity: %s\n", or(sp.GetScheduler(), "(agent default)"), affinityString(sp.GetSessionAffinity()))
	fmt.Fprintf(w, "    internal %s: %s\n", policyString(sp.GetInternal()), setString(p.Internal))
	if p.External != nil {
		fmt.Fprintf(w, "    external %s: %s\n", policyString(sp.GetExternal()), setString(p.External))
	}
	for _, e := range p.Endpoints {
		if e.Reason != "" {
			fmt.Fprintf(w, "    %s:%d  %s\n", e.Address, e.Port, e.Reason)
		}
	}
}

// printAnnouncement says what the node does to attract one outside address.
func printAnnouncement(w io.Writer, a *v1.AddressAnnouncement) {
	var how []string
	if a.Bgp {
		how = append(how, "BGP route")
	}
	if a.L2 {
		how = append(how, "answers ARP/NDP")
	}
	owner := ""
	if a.L2Owner != "" && !a.L2 {
		owner = " (ARP/NDP: " + a.L2Owner + ")"
	}
	if len(how) > 0 {
		fmt.Fprintf(w, "  announces %s: %s%s\n", a.Address, strings.Join(how, ", "), owner)
		return
	}
	fmt.Fprintf(w, "  does not announce %s: %s%s\n", a.Address, a.Reason, owner)
}

func frontendsString(fs []*v1.Frontend) string {
	var parts []string
	for _, f := range fs {
		kind := strings.TrimPrefix(f.Kind.String(), "FRONTEND_KIND_")
		addr := or(f.Address, "<node addresses>")
		s := fmt.Sprintf("%s %s", kind, joinHostPort(addr, f.Port))
		if len(f.SourceRanges) > 0 {
			s += " from " + strings.Join(f.SourceRanges, ",")
		}
		parts = append(parts, s)
	}
	return or(strings.Join(parts, ", "), "-")
}

func joinHostPort(addr string, port uint32) string {
	if strings.Contains(addr, ":") {
		return fmt.Sprintf("[%s]:%d", addr, port)
	}
	return fmt.Sprintf("%s:%d", addr, port)
}

func affinityString(a *v1.SessionAffinity) string {
	if a == nil {
		return "None"
	}
	return fmt.Sprintf("ClientIP %ds", a.TimeoutSeconds)
}

func policyString(p *v1.TrafficPolicy) string {
	s := "(" + strings.ToLower(strings.TrimPrefix(p.GetScope().String(), "ENDPOINT_SCOPE_"))
	if p.GetMasquerade() {
		s += ", masquerade"
	}
	return s + ")"
}

func setString(s *v1.EndpointSet) string {
	parts := []string{strings.TrimPrefix(s.GetAction().String(), "TRAFFIC_ACTION_")}
	for _, b := range s.GetBackends() {
		parts = append(parts, joinHostPort(b.Address, b.Port))
	}
	return strings.Join(parts, " ")
}

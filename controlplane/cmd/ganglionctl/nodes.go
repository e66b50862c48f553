package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func (c *client) nodesCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "Every node the brain knows, connected or not, and how far its agent is in sync",
		Args:  cobra.NoArgs,
	}
	outputFlag(cmd, &output)
	cmd.RunE = c.withBrain(func(ctx context.Context, _ []string) error {
		resp, err := c.inspect.ListNodes(ctx, &v1.ListNodesRequest{})
		if err != nil {
			return err
		}
		return c.printNodes(output, resp.Nodes)
	})
	return cmd
}

func (c *client) printNodes(format string, nodes []*v1.NodeStatus) error {
	items := make([]json.RawMessage, 0, len(nodes))
	for _, n := range nodes {
		b, err := protojson.Marshal(n)
		if err != nil {
			return err
		}
		items = append(items, b)
	}
	if ok, err := printStructured(c.out, format, map[string]any{"items": items}); ok {
		return err
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprint(w, "NAME\tZONE\tCONNECTED\tLEASE\tRESOURCES\tPENDING\tREJECTED\tLAG\tLAST ERROR")
	if format == "wide" {
		fmt.Fprint(w, "\tACKED\tAGENT")
	}
	fmt.Fprintln(w)
	for _, n := range nodes {
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%d\t%d\t%d\t%.1fs\t%s", n.Name, or(n.Zone, "-"), n.Connected, leaseColumn(n.Lease),
			n.Resources, n.Pending, n.Rejected, n.LagSeconds, or(lastError(n), "-"))
		if format == "wide" {
			fmt.Fprintf(w, "\t%d\t%s", n.AckedGeneration, or(n.AgentVersion, "-"))
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

// leaseColumn says whether a connected node's lease is held: a node can be connected while its
// lease is lost, and then its endpoints are taken out everywhere after the grace.
func leaseColumn(l *v1.NodeLease) string {
	switch {
	case l == nil:
		return "-"
	case l.State == v1.LeaseState_LEASE_STATE_LOST:
		return "lost since " + time.Unix(l.LostUnixSeconds, 0).UTC().Format(time.RFC3339)
	case l.Losses > 0:
		return fmt.Sprintf("held (lost %dx, last %s)", l.Losses, time.Unix(l.LostUnixSeconds, 0).UTC().Format(time.RFC3339))
	}
	return "held"
}

// lastError is the stream's last error, and why the lease is lost while it is.
func lastError(n *v1.NodeStatus) string {
	if l := n.Lease; l.GetState() == v1.LeaseState_LEASE_STATE_LOST && l.LastError != "" {
		if n.LastError == "" {
			return "lease: " + l.LastError
		}
		return n.LastError + "; lease: " + l.LastError
	}
	return n.LastError
}

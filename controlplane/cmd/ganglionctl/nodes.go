package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

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
	fmt.Fprint(w, "NAME\tZONE\tCONNECTED\tRESOURCES\tPENDING\tREJECTED\tLAG\tLAST ERROR")
	if format == "wide" {
		fmt.Fprint(w, "\tACKED\tAGENT")
	}
	fmt.Fprintln(w)
	for _, n := range nodes {
		fmt.Fprintf(w, "%s\t%s\t%v\t%d\t%d\t%d\t%.1fs\t%s", n.Name, or(n.Zone, "-"), n.Connected, n.Resources, n.Pending, n.Rejected, n.LagSeconds, or(n.LastError, "-"))
		if format == "wide" {
			fmt.Fprintf(w, "\t%d\t%s", n.AckedGeneration, or(n.AgentVersion, "-"))
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

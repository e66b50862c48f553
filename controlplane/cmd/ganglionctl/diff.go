package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// errDifferences ends a diff that found differences: exit status 1 with nothing more to say, as
// kubectl diff does. Any other failure of diff exits 2 (see exitCode).
var errDifferences = errors.New("differences found")

// diffFailed marks an error of diff itself, as opposed to the differences it reports.
type diffFailed struct{ error }

func (e diffFailed) Unwrap() error { return e.error }

func (c *client) diffCmd() *cobra.Command {
	var files []string
	var output string
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR|- [-f ...]",
		Short: "Show, node by node, what applying the files would change; nothing is stored",
		Long: `diff validates the documents as apply does and asks the brain to compute, with its own engine,
what each node would be told differently: frontends added and removed, endpoints gained and lost
for internal and external traffic, and other settings. Nothing is stored.
Exit status: 0 no differences, 1 differences, 2 diff failed (kubectl diff's convention).`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - for stdin; repeatable")
	_ = cmd.MarkFlagRequired("filename")
	outputFlag(cmd, &output)
	cmd.RunE = c.withBrain(func(ctx context.Context, _ []string) error {
		docs, err := c.readDocuments(files)
		if err != nil {
			return diffFailed{err}
		}
		resp, err := c.admin.Diff(ctx, &v1.DiffRequest{Documents: docs})
		if err != nil {
			return diffFailed{err}
		}
		if err := printDiff(c.out, output, resp); err != nil {
			return diffFailed{err}
		}
		if len(resp.Nodes) > 0 {
			return errDifferences
		}
		return nil
	})
	return cmd
}

func printDiff(w io.Writer, format string, resp *v1.DiffResponse) error {
	if format == "json" || format == "yaml" {
		b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = printStructured(w, format, jsonRaw(b))
		return err
	}
	for _, n := range resp.Nodes {
		fmt.Fprintf(w, "node %s:\n", n.Node)
		for _, p := range n.Ports {
			fmt.Fprintf(w, "  %s %s\n", changeMark(p.Change), p.Resource)
			printChanges(w, "frontends", frontendChanges(p.FrontendsAdded, "+"), frontendChanges(p.FrontendsRemoved, "-"))
			printChanges(w, "internal", backendChanges(p.InternalGained, "+"), backendChanges(p.InternalLost, "-"))
			printChanges(w, "external", backendChanges(p.ExternalGained, "+"), backendChanges(p.ExternalLost, "-"))
			for _, o := range p.Other {
				fmt.Fprintf(w, "      %s\n", o)
			}
		}
	}
	return nil
}

func changeMark(c v1.PortChange) string {
	switch c {
	case v1.PortChange_PORT_CHANGE_ADDED:
		return "+"
	case v1.PortChange_PORT_CHANGE_REMOVED:
		return "-"
	}
	return "~"
}

func printChanges(w io.Writer, what string, lists ...[]string) {
	var all []string
	for _, l := range lists {
		all = append(all, l...)
	}
	if len(all) > 0 {
		fmt.Fprintf(w, "      %s: %s\n", what, strings.Join(all, " "))
	}
}

func frontendChanges(fs []*v1.Frontend, mark string) []string {
	var out []string
	for _, f := range fs {
		out = append(out, mark+frontendsString([]*v1.Frontend{f}))
	}
	return out
}

func backendChanges(bs []*v1.Backend, mark string) []string {
	var out []string
	for _, b := range bs {
		out = append(out, mark+joinHostPort(b.Address, b.Port))
	}
	return out
}

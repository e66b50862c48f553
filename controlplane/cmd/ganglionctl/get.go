package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func (c *client) getCmd() *cobra.Command {
	var all bool
	var output string
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...]",
		Short: "List stored services (svc), endpoint slices or nodes (no)",
		Args:  cobra.MinimumNArgs(1),
		Example: `  ganglionctl get svc -A
  ganglionctl get svc web -o yaml`,
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace instead of --namespace")
	outputFlag(cmd, &output)
	cmd.RunE = c.withBrain(func(ctx context.Context, args []string) error {
		kind, err := kindArg(args[0])
		if err != nil {
			return err
		}
		ns := c.namespaceOf(kind)
		if all {
			ns = ""
		}
		objs, err := c.getObjects(ctx, kind, ns, args[1:])
		if err != nil {
			return err
		}
		if len(objs) == 0 && (output == "table" || output == "wide") {
			// As kubectl: an empty answer is said, on stderr, so scripts reading stdout see none.
			where := " in " + ns + " namespace"
			if ns == "" {
				where = ""
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "No resources found%s.\n", where)
			return nil
		}
		return c.printObjects(ctx, output, kind, objs)
	})
	return cmd
}

// getObjects returns the stored objects of a kind in ns ("" for all), or exactly the named ones:
// a name that is not stored is an error, as with kubectl.
func (c *client) getObjects(ctx context.Context, kind, ns string, names []string) ([]*v1.Document, error) {
	if len(names) == 0 {
		resp, err := c.admin.Get(ctx, &v1.GetRequest{Selector: &v1.ObjectRef{Kind: kind, Namespace: ns}})
		if err != nil {
			return nil, err
		}
		return resp.Objects, nil
	}
	var out []*v1.Document
	for _, name := range names {
		resp, err := c.admin.Get(ctx, &v1.GetRequest{Selector: &v1.ObjectRef{Kind: kind, Namespace: ns, Name: name}})
		if err != nil {
			return nil, err
		}
		if len(resp.Objects) == 0 {
			return nil, notFound(kind, ns, name)
		}
		out = append(out, resp.Objects...)
	}
	return out, nil
}

func notFound(kind, ns, name string) error {
	kind = strings.ToLower(kind)
	if ns == "" || kind == strings.ToLower(baremetal.KindNode) {
		return fmt.Errorf("%s %q not found", kind, name)
	}
	return fmt.Errorf("%s %q not found in namespace %q", kind, name, ns)
}

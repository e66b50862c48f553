package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func (c *client) deleteCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "delete (KIND NAME... | -f FILE|DIR|-)",
		Short: "Delete objects by kind and name, or the objects files define",
		Example: `  ganglionctl delete svc web -n shop
  ganglionctl delete -f web.yaml`,
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "delete the objects these files define; repeatable")
	cmd.RunE = c.withBrain(func(ctx context.Context, args []string) error {
		refs, err := c.deleteRefs(files, args)
		if err != nil {
			return err
		}
		resp, err := c.admin.Delete(ctx, &v1.DeleteRequest{Objects: refs})
		if err != nil {
			return err
		}
		for _, r := range resp.Deleted {
			fmt.Fprintf(c.out, "%s deleted\n", refString(r))
		}
		return nil
	})
	return cmd
}

// deleteRefs names what to delete: the objects the files define, or KIND NAME... in --namespace.
func (c *client) deleteRefs(files, args []string) ([]*v1.ObjectRef, error) {
	var refs []*v1.ObjectRef
	switch {
	case len(files) > 0 && len(args) > 0:
		return nil, errors.New("delete: give -f or KIND NAME, not both")
	case len(files) > 0:
		docs, err := c.readDocuments(files)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			objs, err := baremetal.Decode(d.Source, []byte(d.Content))
			if err != nil {
				return nil, err
			}
			for _, o := range objs {
				refs = append(refs, &v1.ObjectRef{Kind: o.Key.Kind, Namespace: o.Key.Namespace, Name: o.Key.Name})
			}
		}
	case len(args) >= 2:
		kind, err := kindArg(args[0])
		if err != nil {
			return nil, err
		}
		for _, name := range args[1:] {
			refs = append(refs, &v1.ObjectRef{Kind: kind, Namespace: c.namespaceOf(kind), Name: name})
		}
	default:
		return nil, errors.New("delete: want KIND NAME... or -f FILE")
	}
	return refs, nil
}

// kindArg normalizes a kind the way kubectl accepts it (svc, service, services, ...).
func kindArg(s string) (string, error) {
	kind := baremetal.NormalizeKind(s)
	if kind == "" {
		return "", fmt.Errorf("unknown kind %q: want service (svc), endpointslice or node (no)", s)
	}
	return kind, nil
}

// namespaceOf is --namespace for namespaced kinds and empty for nodes.
func (c *client) namespaceOf(kind string) string {
	if kind == baremetal.KindNode {
		return ""
	}
	return c.namespace
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// readDocuments reads files, directories (their *.yaml, *.yml and *.json) and "-" for stdin.
func (c *client) readDocuments(paths []string) ([]*v1.Document, error) {
	var docs []*v1.Document
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(c.in)
			if err != nil {
				return nil, fmt.Errorf("stdin: %w", err)
			}
			docs = append(docs, &v1.Document{Source: "stdin", Content: string(b)})
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		list := []string{p}
		if st.IsDir() {
			list = nil
			for _, pat := range []string{"*.yaml", "*.yml", "*.json"} {
				m, _ := filepath.Glob(filepath.Join(p, pat))
				list = append(list, m...)
			}
			slices.Sort(list)
		}
		for _, f := range list {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			docs = append(docs, &v1.Document{Source: f, Content: string(b)})
		}
	}
	if len(docs) == 0 {
		return nil, errors.New("-f: no files")
	}
	return docs, nil
}

func (c *client) apply(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	var fl files
	fs.Var(&fl, "f", "file, directory or - (repeatable)")
	dry := fs.Bool("dry-run", false, "validate only; store nothing")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	docs, err := c.readDocuments(fl)
	if err != nil {
		return err
	}
	resp, err := c.admin.Apply(ctx, &v1.ApplyRequest{Documents: docs, DryRun: *dry})
	if err != nil {
		return err
	}
	suffix := ""
	if *dry {
		suffix = " (dry run)"
	}
	for _, r := range resp.Applied {
		fmt.Fprintf(c.out, "%s applied%s\n", refString(r), suffix)
	}
	return nil
}

func refString(r *v1.ObjectRef) string {
	if r.Namespace == "" {
		return strings.ToLower(r.Kind) + "/" + r.Name
	}
	return strings.ToLower(r.Kind) + "/" + r.Namespace + "/" + r.Name
}

func (c *client) get(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	ns := fs.String("n", "", "namespace (default: all)")
	output := fs.String("o", "table", "table, yaml or json")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || len(pos) > 2 {
		return errors.New("get KIND [NAME]")
	}
	kind := baremetal.NormalizeKind(pos[0])
	if kind == "" {
		return fmt.Errorf("unknown kind %q", pos[0])
	}
	sel := &v1.ObjectRef{Kind: kind, Namespace: *ns}
	if len(pos) == 2 {
		sel.Name = pos[1]
	}
	resp, err := c.admin.Get(ctx, &v1.GetRequest{Selector: sel})
	if err != nil {
		return err
	}
	if sel.Name != "" && len(resp.Objects) == 0 {
		return fmt.Errorf("%s %s: not found", kind, sel.Name)
	}
	switch *output {
	case "yaml":
		for i, o := range resp.Objects {
			if i > 0 {
				fmt.Fprintln(c.out, "---")
			}
			fmt.Fprint(c.out, o.Content)
		}
	case "json":
		var items []json.RawMessage
		for _, o := range resp.Objects {
			j, err := yaml.YAMLToJSON([]byte(o.Content))
			if err != nil {
				return err
			}
			items = append(items, j)
		}
		b, err := json.MarshalIndent(map[string]any{"items": items}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(c.out, string(b))
	case "table":
		return c.table(kind, resp.Objects)
	default:
		return fmt.Errorf("-o: %q is not table, yaml or json", *output)
	}
	return nil
}

func (c *client) table(kind string, docs []*v1.Document) error {
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	switch kind {
	case baremetal.KindService:
		fmt.Fprintln(w, "NAMESPACE\tNAME\tTYPE\tVIPS\tPORTS\tBACKENDS")
	case baremetal.KindNode:
		fmt.Fprintln(w, "NAME\tZONE\tADDRESSES")
	default:
		fmt.Fprintln(w, "NAMESPACE\tNAME\tSERVICE\tENDPOINTS")
	}
	for _, d := range docs {
		j, err := yaml.YAMLToJSON([]byte(d.Content))
		if err != nil {
			return err
		}
		k, _ := parseKey(d.Source)
		o, err := baremetal.DecodeStored(store.Item{Key: k, Value: j})
		if err != nil {
			return err
		}
		switch {
		case o.Service != nil:
			sp := o.Service.Spec
			var ports []string
			for _, p := range sp.Ports {
				s := fmt.Sprintf("%d/%s", p.Port, or(p.Protocol, "TCP"))
				if p.NodePort != 0 {
					s = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, or(p.Protocol, "TCP"))
				}
				ports = append(ports, s)
			}
			backends := "-"
			if len(sp.Backends) > 0 {
				backends = fmt.Sprint(len(sp.Backends))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Key.Namespace, o.Key.Name, or(sp.Type, "ClusterIP"), strings.Join(sp.VIPs, ","), strings.Join(ports, ","), backends)
		case o.Node != nil:
			fmt.Fprintf(w, "%s\t%s\t%s\n", o.Key.Name, or(o.Node.Spec.Zone, "-"), strings.Join(o.Node.Spec.Addresses, ","))
		default:
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", o.Key.Namespace, o.Key.Name, o.Slice.Labels["kubernetes.io/service-name"], len(o.Slice.Endpoints))
		}
	}
	return nil
}

// parseKey reads back a key rendered by store.Key.String.
func parseKey(s string) (store.Key, bool) {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) != 3 {
		return store.Key{}, false
	}
	return store.Key{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, true
}

func (c *client) delete(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("delete", flag.ContinueOnError)
	ns := fs.String("n", "default", "namespace")
	var fl files
	fs.Var(&fl, "f", "delete the objects these files define")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	var refs []*v1.ObjectRef
	switch {
	case len(fl) > 0:
		docs, err := c.readDocuments(fl)
		if err != nil {
			return err
		}
		for _, d := range docs {
			objs, err := baremetal.Decode(d.Source, []byte(d.Content))
			if err != nil {
				return err
			}
			for _, o := range objs {
				refs = append(refs, &v1.ObjectRef{Kind: o.Key.Kind, Namespace: o.Key.Namespace, Name: o.Key.Name})
			}
		}
	case len(pos) == 2:
		refs = append(refs, &v1.ObjectRef{Kind: pos[0], Namespace: *ns, Name: pos[1]})
	default:
		return errors.New("delete KIND NAME, or delete -f FILE")
	}
	resp, err := c.admin.Delete(ctx, &v1.DeleteRequest{Objects: refs})
	if err != nil {
		return err
	}
	for _, r := range resp.Deleted {
		fmt.Fprintf(c.out, "%s deleted\n", refString(r))
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

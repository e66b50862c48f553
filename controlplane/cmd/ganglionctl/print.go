package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// printObjects writes stored objects in the asked format. yaml and json give back the documents
// as they were applied (several: YAML documents, or a JSON List, as kubectl prints them).
func (c *client) printObjects(ctx context.Context, format, kind string, docs []*v1.Document) error {
	switch format {
	case "yaml":
		for i, d := range docs {
			if i > 0 {
				fmt.Fprintln(c.out, "---")
			}
			fmt.Fprint(c.out, d.Content)
		}
		return nil
	case "json":
		return printJSONDocs(c.out, docs)
	}
	objs, err := decodeStored(docs)
	if err != nil {
		return err
	}
	var counts map[string]int
	if kind == baremetal.KindService {
		if counts, err = c.sliceEndpoints(ctx, objs); err != nil {
			return err
		}
	}
	return printTable(c.out, format == "wide", kind, objs, counts)
}

func printJSONDocs(w io.Writer, docs []*v1.Document) error {
	items := make([]json.RawMessage, 0, len(docs))
	for _, d := range docs {
		j, err := yaml.YAMLToJSON([]byte(d.Content))
		if err != nil {
			return fmt.Errorf("%s: %w", d.Source, err)
		}
		items = append(items, j)
	}
	var v any = map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
	if len(items) == 1 {
		v = items[0]
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func decodeStored(docs []*v1.Document) ([]*baremetal.Object, error) {
	objs := make([]*baremetal.Object, 0, len(docs))
	for _, d := range docs {
		j, err := yaml.YAMLToJSON([]byte(d.Content))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Source, err)
		}
		k, ok := parseKey(d.Source)
		if !ok {
			return nil, fmt.Errorf("%s: not a stored object's key", d.Source)
		}
		o, err := baremetal.DecodeStored(store.Item{Key: k, Value: j})
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// sliceEndpoints counts, per namespace/service, the endpoints of the EndpointSlices of the
// namespaces the services are in: services applied as Kubernetes manifests keep their backends
// there, not in spec.backends.
func (c *client) sliceEndpoints(ctx context.Context, services []*baremetal.Object) (map[string]int, error) {
	namespaces := map[string]bool{}
	for _, o := range services {
		if len(o.Service.Spec.Backends) == 0 {
			namespaces[o.Key.Namespace] = true
		}
	}
	counts := map[string]int{}
	for ns := range namespaces {
		resp, err := c.admin.Get(ctx, &v1.GetRequest{Selector: &v1.ObjectRef{Kind: baremetal.KindEndpointSlice, Namespace: ns}})
		if err != nil {
			return nil, err
		}
		slices, err := decodeStored(resp.Objects)
		if err != nil {
			return nil, err
		}
		for _, s := range slices {
			counts[s.Key.Namespace+"/"+s.Slice.Labels["kubernetes.io/service-name"]] += len(s.Slice.Endpoints)
		}
	}
	return counts, nil
}

func printTable(out io.Writer, wide bool, kind string, objs []*baremetal.Object, sliceCounts map[string]int) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	switch kind {
	case baremetal.KindService:
		fmt.Fprint(w, "NAMESPACE\tNAME\tTYPE\tVIPS\tPORTS\tBACKENDS")
		if wide {
			fmt.Fprint(w, "\tEXTERNAL\tETP\tITP\tAFFINITY")
		}
		fmt.Fprintln(w)
	case baremetal.KindNode:
		fmt.Fprintln(w, "NAME\tZONE\tADDRESSES")
	default:
		fmt.Fprintln(w, "NAMESPACE\tNAME\tSERVICE\tENDPOINTS")
	}
	for _, o := range objs {
		switch {
		case o.Service != nil:
			serviceRow(w, wide, o, sliceCounts)
		case o.Node != nil:
			fmt.Fprintf(w, "%s\t%s\t%s\n", o.Key.Name, or(o.Node.Spec.Zone, "-"), strings.Join(o.Node.Spec.Addresses, ","))
		default:
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", o.Key.Namespace, o.Key.Name, o.Slice.Labels["kubernetes.io/service-name"], len(o.Slice.Endpoints))
		}
	}
	return w.Flush()
}

func serviceRow(w io.Writer, wide bool, o *baremetal.Object, sliceCounts map[string]int) {
	sp := o.Service.Spec
	var ports []string
	for _, p := range sp.Ports {
		s := fmt.Sprintf("%d/%s", p.Port, or(p.Protocol, "TCP"))
		if p.NodePort != 0 {
			s = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, or(p.Protocol, "TCP"))
		}
		ports = append(ports, s)
	}
	backends := len(sp.Backends)
	if backends == 0 {
		backends = sliceCounts[o.Key.Namespace+"/"+o.Key.Name]
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d", o.Key.Namespace, o.Key.Name, or(sp.Type, "ClusterIP"), or(strings.Join(sp.VIPs, ","), "-"), strings.Join(ports, ","), backends)
	if wide {
		external := append(append([]string{}, sp.LoadBalancerIPs...), sp.ExternalIPs...)
		affinity := "None"
		if sp.SessionAffinity != nil {
			affinity = "ClientIP"
		}
		fmt.Fprintf(w, "\t%s\t%s\t%s\t%s", or(strings.Join(external, ","), "-"), or(sp.ExternalTrafficPolicy, "Cluster"), or(sp.InternalTrafficPolicy, "Cluster"), affinity)
	}
	fmt.Fprintln(w)
}

// parseKey reads back a key rendered by store.Key.String.
func parseKey(s string) (store.Key, bool) {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) != 3 {
		return store.Key{}, false
	}
	return store.Key{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, true
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

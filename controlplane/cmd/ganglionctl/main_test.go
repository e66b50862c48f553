package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fakeBrain answers the admin and inspect calls ganglionctl makes from fixed objects, so the
// output formats can be compared with goldens; e2e/ctl_test.go drives a real brain.
type fakeBrain struct {
	v1.UnimplementedAdminServiceServer
	v1.UnimplementedInspectServiceServer
	docs []*v1.Document
}

func (f *fakeBrain) Get(_ context.Context, req *v1.GetRequest) (*v1.GetResponse, error) {
	sel := req.Selector
	resp := &v1.GetResponse{}
	for _, d := range f.docs {
		k, _ := parseKey(d.Source)
		if k.Kind == sel.Kind && (sel.Namespace == "" || sel.Namespace == k.Namespace) && (sel.Name == "" || sel.Name == k.Name) {
			resp.Objects = append(resp.Objects, d)
		}
	}
	return resp, nil
}

func (f *fakeBrain) ListNodes(context.Context, *v1.ListNodesRequest) (*v1.ListNodesResponse, error) {
	return &v1.ListNodesResponse{Nodes: []*v1.NodeStatus{
		{Name: "node-1", Zone: "a", Connected: true, Resources: 12, AckedGeneration: 7, AgentVersion: "v1.2.3",
			Lease: &v1.NodeLease{State: v1.LeaseState_LEASE_STATE_LOST, LostUnixSeconds: 1764561600, Losses: 1,
				LastError: "store: lease 694d7a1b2c3d of leases/node-1 ended: store: lease expired"}},
		{Name: "node-2", Resources: 12, Pending: 3, LagSeconds: 1.5, LastError: "stream closed"},
	}}, nil
}

func (f *fakeBrain) ExplainService(_ context.Context, req *v1.ExplainServiceRequest) (*v1.ExplainServiceResponse, error) {
	if req.Node != "node-1" && req.Node != "node-2" {
		return nil, status.Errorf(codes.NotFound, "node %q: not known and not connected", req.Node)
	}
	local := &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_DROP}
	if req.Node == "node-1" {
		local = &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_FORWARD, Backends: []*v1.Backend{{Address: "10.1.0.1", Port: 8080, Weight: 1}}}
	}
	cluster := &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_FORWARD, Backends: []*v1.Backend{{Address: "10.1.0.1", Port: 8080, Weight: 1}}}
	// The load balancer's address is ETP Local: node-1, with the endpoint, attracts it.
	announced := &v1.AddressAnnouncement{Address: "192.0.2.10", L2Owner: "node-1", Reason: "externalTrafficPolicy Local: no ready endpoint on this node"}
	if req.Node == "node-1" {
		announced = &v1.AddressAnnouncement{Address: "192.0.2.10", Bgp: true, L2: true, L2Owner: "node-1"}
	}
	return &v1.ExplainServiceResponse{Announcements: []*v1.AddressAnnouncement{announced}, Ports: []*v1.PortExplanation{{
		Resource: req.Namespace + "/" + req.Name + ":http/v4",
		Service: &v1.ServicePort{
			Namespace: req.Namespace, Name: req.Name, PortName: "http", Family: v1.IPFamily_IP_FAMILY_IPV4, Protocol: v1.Protocol_PROTOCOL_TCP,
			Frontends: []*v1.Frontend{
				{Kind: v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP, Address: "10.96.0.10", Port: 80},
				{Kind: v1.FrontendKind_FRONTEND_KIND_NODE_PORT, Port: 30080},
				{Kind: v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, Address: "192.0.2.10", Port: 80, SourceRanges: []string{"198.51.100.0/24"}},
			},
			Scheduler:       "wrr",
			SessionAffinity: &v1.SessionAffinity{TimeoutSeconds: 600},
			Internal:        &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER},
			External:        &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_LOCAL},
		},
		Internal: cluster,
		External: local,
		Endpoints: []*v1.EndpointExplanation{
			{Address: "10.1.0.1", Port: 8080, Internal: true, External: req.Node == "node-1"},
			{Address: "10.1.0.2", Port: 8080, Reason: "not ready"},
		},
	}}}, nil
}

// Diff reports a change when a document mentions "replicas-changed", none otherwise.
func (f *fakeBrain) Diff(_ context.Context, req *v1.DiffRequest) (*v1.DiffResponse, error) {
	if !strings.Contains(req.Documents[0].Content, "replicas-changed") {
		return &v1.DiffResponse{}, nil
	}
	return &v1.DiffResponse{Nodes: []*v1.NodeDiff{{Node: "node-1", Ports: []*v1.PortDiff{
		{
			Resource: "default/web:http/v4", Change: v1.PortChange_PORT_CHANGE_CHANGED,
			InternalGained: []*v1.Backend{{Address: "10.1.0.3", Port: 8080, Weight: 1}},
			ExternalLost:   []*v1.Backend{{Address: "10.1.0.1", Port: 8080, Weight: 1}},
			Other:          []string{"scheduler: rr -> wrr"},
		},
		{
			Resource: "default/api/v6", Change: v1.PortChange_PORT_CHANGE_ADDED,
			FrontendsAdded: []*v1.Frontend{{Kind: v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP, Address: "fd00::10", Port: 443}},
			InternalGained: []*v1.Backend{{Address: "fd00:1::5", Port: 8443, Weight: 1}},
		},
	}}}}, nil
}

const webService = `apiVersion: ganglion-proxy.io/v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  externalTrafficPolicy: Local
  loadBalancerIPs:
  - 192.0.2.10
  ports:
  - name: http
    nodePort: 30080
    port: 80
    targetPort: 8080
  sessionAffinity:
    timeoutSeconds: 600
  type: LoadBalancer
  vips:
  - 10.96.0.10
`

const kubeService = `apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
spec:
  clusterIP: 10.96.0.20
  ports:
  - port: 443
    protocol: TCP
`

const apiSlice = `addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses:
  - 10.1.0.5
- addresses:
  - 10.1.0.6
kind: EndpointSlice
metadata:
  labels:
    kubernetes.io/service-name: api
  name: api-1
  namespace: shop
ports:
- port: 8443
`

func startFake(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBrain{docs: []*v1.Document{
		{Source: "Service/default/web", Content: webService},
		{Source: "Service/shop/api", Content: kubeService},
		{Source: "EndpointSlice/shop/api-1", Content: apiSlice},
	}}
	srv := grpc.NewServer()
	v1.RegisterAdminServiceServer(srv, f)
	v1.RegisterInspectServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestOutputs compares every output format of get, describe and nodes with its golden file.
// Global flags go after the subcommand on purpose: kubectl users put them anywhere.
func TestOutputs(t *testing.T) {
	addr := startFake(t)
	cases := map[string][]string{
		"get-svc":             {"get", "svc"},
		"get-svc-all":         {"get", "svc", "-A"},
		"get-svc-all-wide":    {"get", "services", "-A", "-o", "wide"},
		"get-svc-web-yaml":    {"get", "svc", "web", "-o", "yaml"},
		"get-svc-web-json":    {"get", "svc", "web", "-o", "json"},
		"get-svc-all-json":    {"get", "svc", "-A", "-o", "json"},
		"get-endpointslices":  {"get", "endpointslice", "-n", "shop"},
		"describe-web":        {"describe", "service", "web"},
		"describe-web-node-1": {"describe", "svc", "web", "--node", "node-1"},
		"describe-web-json":   {"describe", "service", "web", "-o", "json"},
		"describe-web-yaml":   {"describe", "service", "web", "-o", "yaml", "--node", "node-2"},
		"nodes":               {"nodes"},
		"nodes-wide":          {"nodes", "-o", "wide"},
		"nodes-json":          {"nodes", "-o", "json"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append(args, "--insecure", "--server", addr)
			if err := run(args, strings.NewReader(""), &out, &errOut); err != nil {
				t.Fatalf("ganglionctl %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
			}
			golden(t, filepath.Join("testdata", name+".golden"), out.String())
		})
	}
}

// TestErrors checks that what kubectl refuses is refused, with a message naming the cause.
func TestErrors(t *testing.T) {
	addr := startFake(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"get", "svc", "nope"}, `service "nope" not found in namespace "default"`},
		{[]string{"get", "svc", "web", "-n", "shop"}, `service "web" not found in namespace "shop"`},
		{[]string{"get", "pods"}, `unknown kind "pods"`},
		{[]string{"get", "svc", "-o", "xml"}, `--output: "xml" is not one of`},
		{[]string{"describe", "service", "web", "--node", "typo"}, `--node: node "typo" not found`},
		{[]string{"describe", "node", "node-1"}, "only services can be described"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"delete", "svc"}, "want KIND NAME"},
		{[]string{"apply"}, `required flag(s) "filename" not set`},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := run(append(c.args, "--insecure", "--server", addr), strings.NewReader(""), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ganglionctl %s: got error %v, want one containing %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestHelp checks that help is an answer, not a failure, and that completion scripts exist.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"get", "--help"}, {"help", "describe"}, {"completion", "bash"}} {
		var out, errOut bytes.Buffer
		if err := run(args, strings.NewReader(""), &out, &errOut); err != nil {
			t.Errorf("ganglionctl %s: %v", strings.Join(args, " "), err)
		}
		if out.Len() == 0 {
			t.Errorf("ganglionctl %s printed nothing", strings.Join(args, " "))
		}
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestDiff checks diff's output and kubectl diff's exit convention: 0 none, 1 differences, 2 failed.
func TestDiff(t *testing.T) {
	addr := startFake(t)
	for _, c := range []struct {
		file, golden, output string
		code                 int
	}{
		{"testdata/unchanged.yaml", "", "table", 0},
		{"testdata/changed.yaml", "diff-changed", "table", 1},
		{"testdata/changed.yaml", "diff-changed-json", "json", 1},
		{"testdata/missing.yaml", "", "table", 2},
	} {
		var out, errOut bytes.Buffer
		err := run([]string{"diff", "-f", c.file, "-o", c.output, "--insecure", "--server", addr}, strings.NewReader(""), &out, &errOut)
		if got := exitCode(err); got != c.code {
			t.Errorf("diff -f %s: exit %d (%v), want %d", c.file, got, err, c.code)
		}
		if c.golden != "" {
			golden(t, filepath.Join("testdata", c.golden+".golden"), out.String())
		}
	}
}

// TestEmptyGetSaysSo checks kubectl's answer to an empty listing: nothing on stdout, the reason
// on stderr, success.
func TestEmptyGetSaysSo(t *testing.T) {
	addr := startFake(t)
	var out, errOut bytes.Buffer
	if err := run([]string{"get", "svc", "-n", "empty", "--insecure", "--server", addr}, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || errOut.String() != "No resources found in empty namespace.\n" {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

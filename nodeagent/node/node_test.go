package node

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func hcPortOf(base string, hc uint32, local uint32) dataplane.Port {
	return dataplane.Port{Base: base,
		Service: &v1.ServicePort{Namespace: "shop", Name: "checkout", HealthCheckNodePort: hc},
		Local:   &v1.EndpointSet{LocalReadyEndpoints: local}}
}

func TestHealthCheckNodePortAnswersLikeKubeProxy(t *testing.T) {
	healthy := true
	h := NewHealthChecks(slog.New(slog.DiscardHandler), func() bool { return healthy })
	defer h.Close()
	addrs := map[uint16]string{}
	h.listen = func(p uint16) (net.Listener, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addrs[p] = l.Addr().String()
		}
		return l, err
	}
	get := func() (int, http.Header, map[string]any) {
		resp, err := http.Get("http://" + addrs[32000] + "/any/path")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
		return resp.StatusCode, resp.Header, body
	}

	h.Update(dataplane.Change{Upserts: []dataplane.Port{hcPortOf("shop/checkout:https/v4", 32000, 2), hcPortOf("shop/checkout:https/v6", 32000, 1)}}, nil)
	code, hdr, body := get()
	if code != 200 || hdr.Get("X-Load-Balancing-Endpoint-Weight") != "2" || hdr.Get("Content-Type") != "application/json" || hdr.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("with local endpoints: %d %v", code, hdr)
	}
	if body["localEndpoints"] != 2.0 || body["serviceProxyHealthy"] != true || body["service"].(map[string]any)["name"] != "checkout" {
		t.Errorf("body %v", body)
	}

	h.Update(dataplane.Change{Upserts: []dataplane.Port{hcPortOf("shop/checkout:https/v4", 32000, 0), hcPortOf("shop/checkout:https/v6", 32000, 0)}}, nil)
	if code, _, _ := get(); code != 503 {
		t.Errorf("without local endpoints: %d, want 503", code)
	}
	h.Update(dataplane.Change{Upserts: []dataplane.Port{hcPortOf("shop/checkout:https/v4", 32000, 3)}}, nil)
	healthy = false
	if code, _, body := get(); code != 503 || body["serviceProxyHealthy"] != false {
		t.Errorf("unhealthy agent: %d %v, want 503", code, body)
	}

	h.Update(dataplane.Change{Removals: []string{"shop/checkout:https/v4", "shop/checkout:https/v6"}}, nil)
	if _, err := http.Get("http://" + addrs[32000]); err == nil {
		t.Error("the health check port is still served after its service went away")
	}
}

func TestHealthzFollowsSyncAndBrainOutages(t *testing.T) {
	st := Status{}
	h := &Health{Mode: "nftables", StaleAfter: time.Minute, Status: func() Status { return st }}
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	code := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := code("/healthz"); c != 503 {
		t.Errorf("before the first sync: %d", c)
	}
	st = Status{Synced: true, Connected: true, LastSync: time.Now()}
	if c := code("/healthz"); c != 200 {
		t.Errorf("synced and connected: %d", c)
	}
	st = Status{Synced: true, DisconnectedSince: time.Now().Add(-10 * time.Second)}
	if c := code("/livez"); c != 200 {
		t.Errorf("brain away for 10s: %d, want 200 (rules are kept)", c)
	}
	st = Status{Synced: true, DisconnectedSince: time.Now().Add(-2 * time.Minute)}
	if c := code("/healthz"); c != 503 {
		t.Errorf("brain away past stale-after: %d, want 503", c)
	}
	resp, err := http.Get(srv.URL + "/proxyMode")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "nftables" {
		t.Errorf("/proxyMode %q", b)
	}
}

package peer

import (
	"math"
	"net/netip"
	"strings"
	"testing"
)

func TestPercentileInterpolatesBetweenRanks(t *testing.T) {
	xs := []float64{40, 10, 30, 20, 50} // unsorted on purpose
	for _, c := range []struct{ q, want float64 }{{0, 10}, {0.5, 30}, {0.1, 14}, {0.9, 46}, {0.99, 49.6}, {1, 50}} {
		if got := Percentile(xs, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("p%v = %v, want %v", c.q*100, got, c.want)
		}
	}
	if xs[0] != 40 {
		t.Error("Percentile sorted its argument")
	}
	if !math.IsNaN(Percentile(nil, 0.5)) {
		t.Error("percentile of nothing is a number")
	}
	if got := Percentile([]float64{7}, 0.99); got != 7 {
		t.Errorf("p99 of one sample = %v", got)
	}
}

func TestRatiosPairAndSkipZeroDenominators(t *testing.T) {
	got := Ratios([]float64{1, 2, 3, 4}, []float64{2, 0, 6})
	if len(got) != 2 || got[0] != 0.5 || got[1] != 0.5 {
		t.Errorf("ratios = %v, want [0.5 0.5]", got)
	}
}

func TestResultLine(t *testing.T) {
	r := Result{Services: 10000, Name: "change_p50_ms", KubeProxy: 299, Ganglion: 15.8, Spread: []float64{0.04, 0.05, 0.06, 0.05, 0.07}}
	want := "BENCH peer services=10000 metric=change_p50_ms kubeproxy=299 ganglion=15.8 ratio=0.053 p10=0.044 p90=0.066 samples=5"
	if got := r.Line(); got != want {
		t.Errorf("line\n got %s\nwant %s", got, want)
	}
	brain := Result{Services: 100, Name: "brain_rss_mib", KubeProxy: math.NaN(), Ganglion: 67.94}
	if got := brain.Line(); !strings.Contains(got, "kubeproxy=- ganglion=67.9 ratio=- p10=- p90=- samples=0") {
		t.Errorf("a Ganglion-only figure: %s", got)
	}
}

func TestTableHasARowPerMetricAndColumnsPerSize(t *testing.T) {
	tab := Table([]Result{
		{Services: 100, Name: "change_p50_ms", KubeProxy: 10, Ganglion: 5, Spread: []float64{0.4, 0.5, 0.6}},
		{Services: 100, Name: "brain_rss_mib", KubeProxy: math.NaN(), Ganglion: 60},
		{Services: 10000, Name: "change_p50_ms", KubeProxy: 300, Ganglion: 15, Spread: []float64{0.05}},
	})
	lines := strings.Split(strings.TrimSpace(tab), "\n")
	if len(lines) != 4 {
		t.Fatalf("table:\n%s", tab)
	}
	if !strings.Contains(lines[0], "100 svc: kube-proxy") || !strings.Contains(lines[0], "10,000 svc: kube-proxy") {
		t.Errorf("header: %s", lines[0])
	}
	if want := "| change_p50_ms | 10.0 | 5.00 | 0.500 (0.420–0.580) | 300 | 15.0 | 0.050 |"; lines[2] != want {
		t.Errorf("row\n got %s\nwant %s", lines[2], want)
	}
	if want := "| brain_rss_mib | - | 60.0 | - | | | |"; lines[3] != want {
		t.Errorf("row of a metric missing at one size\n got %s\nwant %s", lines[3], want)
	}
}

func TestParseMetricsSumsSamplesByName(t *testing.T) {
	m := parseMetrics(`# HELP x
# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram
kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.001"} 3
kubeproxy_sync_proxy_rules_duration_seconds_sum 1.5
kubeproxy_sync_proxy_rules_duration_seconds_count 12
ganglion_dataplane_reconcile_total{result="ok"} 4
ganglion_dataplane_reconcile_total{result="repaired",family="ip"} 1
`)
	if m["kubeproxy_sync_proxy_rules_duration_seconds_sum"] != 1.5 || m["kubeproxy_sync_proxy_rules_duration_seconds_count"] != 12 {
		t.Errorf("histogram: %v", m)
	}
	if m["ganglion_dataplane_reconcile_total"] != 5 {
		t.Errorf("labelled counter summed to %v, want 5", m["ganglion_dataplane_reconcile_total"])
	}
}

func TestGeneratedAddressesStayApart(t *testing.T) {
	seen := map[netip.Addr]string{}
	cidr := netip.MustParsePrefix(ClusterCIDR)
	for i := range 10000 {
		ip := ClusterIP(i)
		if !netip.MustParsePrefix("10.96.0.0/16").Contains(ip) || ip == netip.MustParseAddr("10.96.0.1") {
			t.Fatalf("ClusterIP(%d) = %s", i, ip)
		}
		seen[ip] = "cluster ip"
		for k := range EndpointsPerService {
			e := EndpointIP(i, k)
			if !cidr.Contains(e) || seen[e] != "" {
				t.Fatalf("EndpointIP(%d, %d) = %s (outside %s or taken)", i, k, e, ClusterCIDR)
			}
			seen[e] = "endpoint"
		}
	}
	for c := range 100000 {
		a := ChangeIP(c)
		if !cidr.Contains(a) || seen[a] != "" {
			t.Fatalf("ChangeIP(%d) = %s (outside %s or taken by a %s)", c, a, ClusterCIDR, seen[a])
		}
	}
}

package compute

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// TestExplainNamesProxyModeAddresses checks that a load-balancer address no node programs by
// design (ipMode Proxy) is named with its reason, while the VIP-mode one is a frontend.
func TestExplainNamesProxyModeAddresses(t *testing.T) {
	s := svc(loadBalancer("203.0.113.8"))
	s.LoadBalancerIngress = append(s.LoadBalancerIngress, model.LoadBalancerIngress{IP: netip.MustParseAddr("203.0.113.7"), IPMode: model.IPModeProxy})
	e := engineWith(t, s, []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1"))}, node("n1", ""))
	ex, err := e.Explain("n1", model.ServiceKey{Namespace: "default", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var frontends, reasons []string
	for _, p := range ex {
		if p.IgnoredReason != "" {
			reasons = append(reasons, p.IgnoredReason)
			continue
		}
		for _, f := range p.Service.Frontends {
			frontends = append(frontends, f.Address)
		}
	}
	if len(reasons) != 1 || !strings.HasPrefix(reasons[0], "203.0.113.7: load-balancer ingress with ipMode Proxy") {
		t.Errorf("reasons %q: want the Proxy-mode address named", reasons)
	}
	if !strings.Contains(strings.Join(frontends, ","), "203.0.113.8") || strings.Contains(strings.Join(frontends, ","), "203.0.113.7") {
		t.Errorf("frontends %q: want the VIP-mode address only", frontends)
	}
}

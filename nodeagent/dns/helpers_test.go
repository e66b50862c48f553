package dns

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/miekg/dns"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// clusterIP is a ServicePort with ClusterIP frontends (address:port each).
func clusterIP(ns, name, portName string, proto v1.Protocol, frontends ...string) *v1.ServicePort {
	p := &v1.ServicePort{Namespace: ns, Name: name, PortName: portName, Protocol: proto}
	for _, f := range frontends {
		host, port, _ := net.SplitHostPort(f)
		var n uint32
		fmt.Sscan(port, &n)
		p.Frontends = append(p.Frontends, &v1.Frontend{Kind: v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP, Address: host, Port: n})
	}
	return p
}

// ask sends one question to h as a client over UDP (tcp false) or TCP would.
func ask(h *Handler, name string, qtype uint16, tcp bool, edns uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if edns > 0 {
		q.SetEdns0(edns, false)
	}
	resp := h.Answer(context.Background(), q, tcp)
	if resp == nil || resp.Id != q.Id {
		// A panic, not t.Fatal: this also runs inside a fake dataplane, away from any t.
		panic(fmt.Sprintf("%s %s: reply %v does not answer query %d", name, dns.TypeToString[qtype], resp, q.Id))
	}
	return resp
}

// rdata returns the answer section's data, sorted, one string per record ("A 10.96.0.10").
func rdata(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		s := rr.String()
		hdr := rr.Header().String()
		out = append(out, dns.TypeToString[rr.Header().Rrtype]+" "+strings.TrimSpace(strings.TrimPrefix(s, hdr)))
	}
	sort.Strings(out)
	return out
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// synced marks a table's state complete, as the agent's first prune does.
func synced(t *Table) *Table {
	t.mu.Lock()
	keep := map[string]bool{}
	for b := range t.ports {
		keep[b] = true
	}
	t.mu.Unlock()
	t.keepPorts(keep)
	return t
}

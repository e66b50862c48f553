package dns

import (
	"context"
	"testing"

	"github.com/miekg/dns"
)

func TestServerAnswersOverUDPAndTCPOnOnePort(t *testing.T) {
	srv, err := Listen(Config{Listen: []string{"127.0.0.1:0"}}, bigHeadless(100))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	addr := srv.Addrs()[0].String()
	q := new(dns.Msg)
	q.SetQuestion("big.default.svc.cluster.local.", dns.TypeA)
	udp, _, err := (&dns.Client{Net: "udp"}).Exchange(q, addr)
	if err != nil {
		t.Fatalf("over UDP: %v", err)
	}
	if !udp.Truncated || len(udp.Answer) == 100 {
		t.Errorf("over UDP: truncated %v with %d answers; want a truncated reply", udp.Truncated, len(udp.Answer))
	}
	tcp, _, err := (&dns.Client{Net: "tcp"}).Exchange(q, addr)
	if err != nil {
		t.Fatalf("over TCP on the same port: %v", err)
	}
	if tcp.Truncated || len(tcp.Answer) != 100 {
		t.Errorf("over TCP: truncated %v with %d answers; want all 100", tcp.Truncated, len(tcp.Answer))
	}
}

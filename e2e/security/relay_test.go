package security

import (
	"io"
	"net"
	"sync"
	"testing"
)

// relay forwards TCP connections to a target and can cut them all at once, as a network fault
// would: the way to make an agent dial its brain again without touching either process.
type relay struct {
	addr, target string
	l            net.Listener

	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: l.Addr().String(), target: target, l: l}
	go r.serve()
	t.Cleanup(func() { l.Close(); r.cut() })
	return r
}

func (r *relay) serve() {
	for {
		in, err := r.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			in.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, in, out)
		r.accepted++
		r.mu.Unlock()
		go pipe(in, out)
		go pipe(out, in)
	}
}

// pipe copies until either side ends, then closes both.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes every connection relayed so far.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// connections is how many connections the relay has accepted.
func (r *relay) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

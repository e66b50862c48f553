package brain_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
)

// wireMeter counts what crosses an agent's sockets: bytes both ways as the kernel carries them
// (TLS records and handshakes, HTTP/2 frames, gRPC framing, pings), and connection attempts per
// address. Counting marshalled messages instead would leave out everything a network pays for.
type wireMeter struct {
	bytes atomic.Int64
	mu    sync.Mutex
	dials map[string]int
}

// dialOption makes a gRPC client dial through the meter.
func (m *wireMeter) dialOption() grpc.DialOption { return grpc.WithContextDialer(m.dial) }

// dial connects to addr and counts the attempt and what crosses the connection.
func (m *wireMeter) dial(ctx context.Context, addr string) (net.Conn, error) {
	m.mu.Lock()
	if m.dials == nil {
		m.dials = map[string]int{}
	}
	m.dials[addr]++
	m.mu.Unlock()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &meteredConn{Conn: c, m: m}, nil
}

// dialsTo is how many connections were attempted to addr.
func (m *wireMeter) dialsTo(addr string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dials[addr]
}

type meteredConn struct {
	net.Conn
	m *wireMeter
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.bytes.Add(int64(n))
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.bytes.Add(int64(n))
	return n, err
}

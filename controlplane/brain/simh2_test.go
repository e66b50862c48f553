package brain_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
)

// h2Stream is one gRPC stream on a connection of its own, spoken with x/net/http2's framer on
// the simulated agent's own goroutine. grpc-go's client hands every message from a reader
// goroutine to the caller and every reply to a writer goroutine: at 1,000 held agents 62.6 µs of
// CPU per update (41.4 with this client; bare TLS 25-28), on the two cores the brain is measured
// on. The brain still serves real gRPC over TLS and HTTP/2: the invariants of every benchmark
// hold the agents' state to the brain's.
type h2Stream struct {
	conn net.Conn
	w    *bufio.Writer
	fr   *http2.Framer
	in   []byte // DATA received; what is before off was returned as messages
	off  int
	// The send windows (the brain's reads free them) and what was received since the last
	// window update.
	connSend, streamSend int64
	peerInitial          int64 // the brain's initial stream window, which the stream started with
	unacked              int
	done                 error // set once the brain ended the stream
}

const (
	h2StreamID = 1
	// h2Window is what the agent lets the brain send ahead: the real agent's (grpcopts).
	h2Window = 4 << 20
	// h2MaxFrame is the largest DATA frame sent: the HTTP/2 default every peer accepts.
	h2MaxFrame = 16 << 10
	// h2KeepBuffer bounds the receive buffer an idle stream keeps: five thousand agents keeping
	// their snapshot's megabyte would hold gigabytes.
	h2KeepBuffer = 64 << 10
)

// dialH2 opens a gRPC stream to method over TLS (ALPN h2; cfg names the server), with conn from
// dial.
func dialH2(ctx context.Context, addr, method string, dial func(context.Context, string) (net.Conn, error), cfg *tls.Config) (*h2Stream, error) {
	raw, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	s := &h2Stream{conn: tc, w: bufio.NewWriterSize(tc, 4<<10), connSend: 65535, streamSend: 65535, peerInitial: 65535}
	s.fr = http2.NewFramer(s.w, bufio.NewReaderSize(tc, 4<<10))
	s.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := s.open(addr, method); err != nil {
		tc.Close()
		return nil, err
	}
	return s, nil
}

// open writes the preface, the agent's settings and window, and the request's headers.
func (s *h2Stream) open(authority, method string) error {
	var block []byte
	enc := hpack.NewEncoder(writerFunc(func(p []byte) (int, error) { block = append(block, p...); return len(p), nil }))
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", method}, {":authority", authority},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return err
		}
	}
	_, err := s.w.WriteString(http2.ClientPreface)
	return errors.Join(err,
		s.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2Window}),
		s.fr.WriteWindowUpdate(0, h2Window-65535),
		s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h2StreamID, BlockFragment: block, EndHeaders: true}),
		s.w.Flush())
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Close ends the connection.
func (s *h2Stream) Close() error { return s.conn.Close() }

// Send writes msg as one gRPC message, in frames the send windows allow, and flushes it.
func (s *h2Stream) Send(msg []byte) error {
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	copy(body[5:], msg)
	for len(body) > 0 {
		n := int64(min(len(body), h2MaxFrame))
		for min(s.connSend, s.streamSend) < n {
			if err := s.flushAndRead(); err != nil {
				return err
			}
		}
		if err := s.fr.WriteData(h2StreamID, false, body[:n]); err != nil {
			return err
		}
		s.connSend, s.streamSend, body = s.connSend-n, s.streamSend-n, body[n:]
	}
	return s.w.Flush()
}

func (s *h2Stream) flushAndRead() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.readFrame()
}

// Recv returns the next message; it is valid until the next call.
func (s *h2Stream) Recv() ([]byte, error) {
	for {
		if in := s.in[s.off:]; len(in) >= 5 {
			if in[0] != 0 {
				return nil, errors.New("h2 stream: a compressed message, which was not asked for")
			}
			n := int(binary.BigEndian.Uint32(in[1:5]))
			if len(in) >= 5+n {
				s.off += 5 + n
				return in[5 : 5+n], nil
			}
		}
		if err := s.readFrame(); err != nil {
			return nil, err
		}
	}
}

// readFrame reads one frame and does what it asks: DATA is kept for Recv (and its window given
// back in large steps), a ping or settings are answered, the end of the stream is its error.
func (s *h2Stream) readFrame() error {
	if s.done != nil {
		return s.done
	}
	f, err := s.fr.ReadFrame()
	if err != nil {
		return err
	}
	switch f := f.(type) {
	case *http2.DataFrame:
		if f.StreamID != h2StreamID {
			return fmt.Errorf("h2 stream: DATA on stream %d", f.StreamID)
		}
		if s.off == len(s.in) { // every message was returned: start over
			s.in, s.off = s.in[:0], 0
			if cap(s.in) > h2KeepBuffer {
				s.in = nil
			}
		}
		s.in = append(s.in, f.Data()...)
		if s.unacked += int(f.Length); s.unacked >= h2Window/4 {
			n := uint32(s.unacked)
			s.unacked = 0
			if err := errors.Join(s.fr.WriteWindowUpdate(0, n), s.fr.WriteWindowUpdate(h2StreamID, n), s.w.Flush()); err != nil {
				return err
			}
		}
		if f.StreamEnded() {
			s.done = errors.New("h2 stream: the brain ended the stream without trailers")
		}
	case *http2.MetaHeadersFrame:
		if f.StreamEnded() {
			s.done = trailerStatus(f)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
			s.streamSend += int64(v) - s.peerInitial
			s.peerInitial = int64(v)
		}
		return errors.Join(s.fr.WriteSettingsAck(), s.w.Flush())
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		return errors.Join(s.fr.WritePing(true, f.Data), s.w.Flush())
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			s.connSend += int64(f.Increment)
		} else {
			s.streamSend += int64(f.Increment)
		}
	case *http2.RSTStreamFrame:
		s.done = fmt.Errorf("h2 stream: reset by the brain: %v", f.ErrCode)
	case *http2.GoAwayFrame:
		if f.ErrCode != http2.ErrCodeNo || f.LastStreamID < h2StreamID {
			s.done = fmt.Errorf("h2 stream: GOAWAY %v: %s", f.ErrCode, f.DebugData())
		}
	}
	return s.done
}

// trailerStatus is the gRPC status in the stream's last headers, as grpc-go's client reports it.
func trailerStatus(f *http2.MetaHeadersFrame) error {
	code, msg := codes.Unknown, "no grpc-status in the trailers"
	if v := f.PseudoValue("status"); v != "" && v != "200" {
		msg = "HTTP status " + v
	}
	for _, h := range f.RegularFields() {
		switch h.Name {
		case "grpc-status":
			if n, err := strconv.ParseUint(h.Value, 10, 32); err == nil {
				code = codes.Code(n)
			}
		case "grpc-message":
			if m, err := url.PathUnescape(h.Value); err == nil {
				msg = m
			} else {
				msg = h.Value
			}
		}
	}
	if code == codes.OK {
		return errors.New("h2 stream: the brain ended the stream")
	}
	return status.Error(code, msg)
}

// TestHeldAgentSyncsAndResumesOverTheFramer holds the benchmarks' simulated agent to the brain
// over mutual TLS: after a snapshot of many frames (more than the default HTTP/2 windows), after
// a change, and after a resume from a brain that changed while it was away, it holds the brain's
// state exactly, and the resume resends only what changed.
func TestHeldAgentSyncsAndResumesOverTheFramer(t *testing.T) {
	const node = "node-0"
	certs := newBenchPKI(t, node)
	br, addr := startBrainWith(t, 3000, 3, stream.Options{}, certs.brainAuth(t))
	roots, err := pki.LoadPool(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := nodeTLS(certs.Dir, node, roots, addr)
	if err != nil {
		t.Fatal(err)
	}
	a := &simAgent{node: node, addr: addr, tls: tlsConf, dial: (&wireMeter{}).dial,
		errs: &errorTally{seen: map[string]int{}}, state: newSimHeld(newNameTable()), reports: io.Discard}
	holds := func() bool {
		n, sum := a.heldSum()
		wantN, wantSum := stateSum(br, node)
		return n == wantN && sum == wantSum
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); a.run(ctx) }()
		return func() { cancel(); <-done }
	}

	stop := run()
	testwait.Eventually(t, "the agent holds the snapshot", holds)
	if n := a.received(); n < 3000 {
		t.Fatalf("the snapshot carried %d resources, want the 3,000 services' and more", n)
	}
	setSlice(br, 1, 3, 1)
	testwait.Eventually(t, "the agent holds the change", holds)
	stop()

	setSlice(br, 2, 3, 1)
	stop = run()
	defer stop()
	testwait.Eventually(t, "the agent holds the state it resumed", holds)
	if resent := a.received(); resent == 0 || resent > 3 {
		t.Errorf("the resume resent %d resources, want those of the one changed slice (1 to 3)", resent)
	}
	a.errs.mu.Lock()
	defer a.errs.mu.Unlock()
	if len(a.errs.seen) > 0 {
		t.Errorf("sessions ended with errors: %v", a.errs.seen)
	}
}

// received is how many resources the agent was sent since its last hello.
func (a *simAgent) received() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, _ := a.state.counts()
	return n
}

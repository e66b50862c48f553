package stream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

var quiet = slog.New(slog.DiscardHandler)

// hangGuard bounds every wait of the tests: far above what any of them needs. It guards against
// hangs; it is not a performance assertion.
const hangGuard = 20 * time.Second

// serve runs the AgentService of a synced hub with opts on loopback, behind the guard of an
// insecure brain (every caller may open any node's stream). fill, when set, fills the engine.
func serve(t *testing.T, opts stream.Options, fill func(*compute.Engine) compute.Delta) (*stream.Hub, string) {
	t.Helper()
	return serveAs(t, opts, fill, nil)
}

// serveAs is serve with every caller authenticated as id (as a node's certificate would make it)
// when id is not nil.
func serveAs(t *testing.T, opts stream.Options, fill func(*compute.Engine) compute.Delta, id *auth.Identity) (*stream.Hub, string) {
	t.Helper()
	if opts.MaxDelay == 0 {
		opts.MaxDelay = 20 * time.Millisecond // tests wait less than agents in production
	}
	hub := stream.NewHub(compute.NewEngine(compute.Options{}), opts, nil)
	if fill != nil {
		hub.Apply(time.Time{}, 1, fill)
	}
	hub.MarkSynced()
	guard, err := auth.New(auth.Config{Insecure: true, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	sopts := append(stream.ServerOptions(), guard.ServerOptions()...)
	if id != nil {
		sopts = append(sopts, grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, identified{ss, auth.NewContext(ss.Context(), *id)})
		}))
	}
	srv := grpc.NewServer(sopts...)
	v1.RegisterAgentServiceServer(srv, stream.NewServer(hub, quiet))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return hub, lis.Addr().String()
}

// identified is a server stream whose context carries another identity.
type identified struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identified) Context() context.Context { return s.ctx }

// services fills the engine with services 0..n-1.
func services(n int) func(*compute.Engine) compute.Delta {
	return func(e *compute.Engine) compute.Delta {
		var d compute.Delta
		for i := range n {
			d.Merge(e.SetService(testService(i)))
		}
		return d
	}
}

// testService is service i: ClusterIP 10.96.x.y, port http 80.
func testService(i int) *model.Service {
	return &model.Service{
		Namespace: "default", Name: fmt.Sprintf("svc-%d", i), Type: model.TypeClusterIP,
		ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
		Ports:      []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}},
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rawStream is an agent stream driven by hand: it says and acknowledges only what a test makes
// it.
type rawStream struct {
	v1.AgentService_StreamClient
	end context.CancelFunc
}

func open(t *testing.T, conn *grpc.ClientConn) rawStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := v1.NewAgentServiceClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rawStream{s, cancel}
}

// send sends m. io.EOF means the brain has ended the stream already: the next Recv says why.
func (s rawStream) send(t *testing.T, m *v1.StreamRequest) {
	t.Helper()
	if err := s.Send(m); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
}

func (s rawStream) hello(t *testing.T, node string) rawStream {
	t.Helper()
	s.send(t, &v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: &v1.Hello{NodeName: node}}})
	return s
}

func (s rawStream) ack(t *testing.T, gen uint64) {
	t.Helper()
	s.send(t, &v1.StreamRequest{Message: &v1.StreamRequest_Ack{Ack: &v1.Ack{Generation: gen}}})
}

func (s rawStream) report(t *testing.T, results ...*v1.EndpointHealth) {
	t.Helper()
	s.send(t, &v1.StreamRequest{Message: &v1.StreamRequest_HealthReport{HealthReport: &v1.HealthReport{Endpoints: results}}})
}

// recv receives the stream's next message, failing the test if none comes before hangGuard.
func (s rawStream) recv(t *testing.T) (*v1.StreamResponse, error) {
	t.Helper()
	type received struct {
		resp *v1.StreamResponse
		err  error
	}
	got := make(chan received, 1)
	go func() {
		resp, err := s.Recv()
		got <- received{resp, err}
	}()
	select {
	case r := <-got:
		return r.resp, r.err
	case <-time.After(hangGuard):
		t.Fatal("timed out waiting for the brain")
		return nil, nil
	}
}

// update receives the next message, which must be an update.
func (s rawStream) update(t *testing.T) *v1.Update {
	t.Helper()
	resp, err := s.recv(t)
	if err != nil {
		t.Fatalf("waiting for an update: %v", err)
	}
	u := resp.GetUpdate()
	if u == nil {
		t.Fatalf("got %v, want an update", resp)
	}
	return u
}

// ended receives the status the brain ended the stream with, before anything else, and checks
// its code and that its message contains want.
func (s rawStream) ended(t *testing.T, code codes.Code, want string) {
	t.Helper()
	resp, err := s.recv(t)
	if err == nil {
		t.Fatalf("got %v, want the stream ended with %v", resp, code)
	}
	if st := status.Convert(err); st.Code() != code || !strings.Contains(st.Message(), want) {
		t.Fatalf("stream ended with %v, want %v containing %q", err, code, want)
	}
}

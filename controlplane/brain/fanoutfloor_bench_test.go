package brain_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// BenchmarkFanoutFloor is what the fan-out's exchange costs this machine with nothing but TLS:
// the same 5,000 agents with their node certificates in a child process, each on its own
// connection, are sent floorUpdate bytes at once and answer floorAck bytes, one goroutine a
// connection on both sides, no HTTP/2, no gRPC, no brain. Its latency is the floor under
// BenchmarkFanout5000's on the same machine: machines differ by a factor of two in what a
// loopback round trip costs, and this line says how far the brain is from the transport.
func BenchmarkFanoutFloor(b *testing.B) {
	certs, restore := fanoutFleet(b, 5000)
	defer restore()
	agents := fanAgents
	for b.Loop() {
		lis := listen(b)
		fleet := startFleet(b, simConfig{Addr: lis.Addr().String(), Agents: agents, PKIDir: certs.Dir, Work: workFloor})
		conns := acceptTLS(b, lis, certs.brainAuth(b).TLS, agents)
		lat, serverCPU, agentsCPU := floorRounds(b, conns, fleet)
		lis.Close()
		for _, c := range conns {
			c.Close()
		}
		fleet.stop()
		r := changeRun{lat: lat}
		per := func(d time.Duration) float64 {
			return float64(d) / float64(time.Microsecond) / float64(agents*len(lat))
		}
		fmt.Printf("BENCH fanout floor agents=%d transport=tls rounds=%d out_bytes=%d back_bytes=%d p50_ms=%.1f p99_ms=%.1f"+
			" server_cpu_us_per_agent=%.1f agents_cpu_us_per_agent=%.1f\n",
			agents, len(lat), floorUpdate, floorAck, r.percentile(0.5), r.percentile(0.99), per(serverCPU), per(agentsCPU))
	}
}

const (
	// workFloor agents answer every floorUpdate bytes with floorAck bytes (BenchmarkFanoutFloor).
	workFloor = "floor"
	// floorUpdate and floorAck are the fan-out's bytes per agent and change, out and back, as
	// BenchmarkFanout5000 counts them on the wire (317 in all).
	floorUpdate, floorAck = 301, 16
	floorRoundsN          = 300
)

// acceptTLS accepts n connections and completes their handshakes.
func acceptTLS(b *testing.B, lis net.Listener, cfg *tls.Config, n int) []*tls.Conn {
	b.Helper()
	conns := make([]*tls.Conn, 0, n)
	errs := make(chan error, n)
	for range n {
		c, err := lis.Accept()
		if err != nil {
			b.Fatal(err)
		}
		tc := tls.Server(c, cfg)
		conns = append(conns, tc)
		go func() { errs <- tc.HandshakeContext(context.Background()) }()
	}
	for range n {
		if err := <-errs; err != nil {
			b.Fatalf("handshake: %v", err)
		}
	}
	return conns
}

// floorRounds sends floorRoundsN rounds, each to every connection at once, and times each until
// the last answer; it returns the rounds' latencies and both processes' CPU over them.
func floorRounds(b *testing.B, conns []*tls.Conn, fleet *simFleet) (lat []time.Duration, serverCPU, agentsCPU time.Duration) {
	b.Helper()
	kicks := make([]chan struct{}, floorRoundsN)
	for i := range kicks {
		kicks[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			update, ack := make([]byte, floorUpdate), make([]byte, floorAck)
			var err error
			for _, kick := range kicks {
				<-kick
				if err == nil { // a broken connection is reported once; its rounds still end
					if _, err = c.Write(update); err == nil {
						_, err = io.ReadFull(c, ack)
					}
					if err != nil {
						errs <- err
					}
				}
				wg.Done()
			}
		}()
	}
	server0, agents0 := cpuTime(b, "self"), fleet.cpu(b)
	for _, kick := range kicks {
		wg.Add(len(conns))
		start := time.Now()
		close(kick)
		wg.Wait()
		lat = append(lat, time.Since(start))
		select {
		case err := <-errs:
			b.Fatalf("round %d: %v", len(lat), err)
		default:
		}
	}
	return lat, cpuTime(b, "self") - server0, fleet.cpu(b) - agents0
}

// floorFleet is the agents of BenchmarkFanoutFloor: a TLS connection each, answering every
// update with an ack until the connection closes.
type floorFleet struct {
	conns []*tls.Conn
	wg    sync.WaitGroup
}

func startFloorFleet(cfg simConfig, roots *pki.Pool) (*floorFleet, error) {
	f := &floorFleet{}
	for i := range cfg.Agents {
		tlsConf, err := nodeTLS(cfg.PKIDir, simNode(i), roots, cfg.Addr)
		if err != nil {
			return nil, err
		}
		c, err := tls.Dial("tcp", cfg.Addr, tlsConf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", simNode(i), err)
		}
		f.conns = append(f.conns, c)
		f.wg.Go(func() {
			update, ack := make([]byte, floorUpdate), make([]byte, floorAck)
			for {
				if _, err := io.ReadFull(c, update); err != nil {
					return
				}
				if _, err := c.Write(ack); err != nil {
					return
				}
			}
		})
	}
	return f, nil
}

func (f *floorFleet) command(args []string, _ io.Writer) error {
	return fmt.Errorf("unknown command %q", args)
}

func (f *floorFleet) stop() {
	for _, c := range f.conns {
		c.Close()
	}
	f.wg.Wait()
}

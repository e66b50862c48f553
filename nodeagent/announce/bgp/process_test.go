package bgp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// A Speaker under test runs in a child process started with `ip netns exec <node>`: GoBGP dials
// its peers from its own goroutines, which run on whatever OS thread the scheduler picks, not on
// a thread locked into the node's namespace by netlab's Do, so in-process speakers would dial
// from the test's namespace. The child is this test binary again: TestMain sees speakerEnv and
// serves commands (JSON lines) on stdin instead of running tests.
const (
	speakerEnv      = "GANGLION_BGP_TEST_SPEAKER"
	speakerAddrsEnv = "GANGLION_BGP_TEST_NODE_ADDRESSES"
)

func TestMain(m *testing.M) {
	if os.Getenv(speakerEnv) != "" {
		os.Exit(serveSpeaker(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

type speakerCmd struct {
	Op     string          `json:"op"` // set, stop, peers
	Conf   json.RawMessage `json:"conf,omitempty"`
	Routes []netip.Addr    `json:"routes,omitempty"`
}

type speakerReply struct {
	Err   string       `json:"err,omitempty"`
	Peers []PeerStatus `json:"peers,omitempty"`
	// Metrics are the gathered gauges, by name{labels}.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// serveSpeaker is the child process: one Speaker, driven by commands on in.
func serveSpeaker(in io.Reader, out io.Writer) int {
	var addrs []netip.Addr
	for _, s := range strings.Fields(os.Getenv(speakerAddrsEnv)) {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	sp := New(Config{NodeAddresses: addrs, Log: log, Registerer: reg})
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var c speakerCmd
		var r speakerReply
		var err error
		if err = json.Unmarshal(sc.Bytes(), &c); err == nil {
			switch c.Op {
			case "set":
				var conf *v1.BGPConfig
				if len(c.Conf) > 0 && string(c.Conf) != "null" {
					conf = &v1.BGPConfig{}
					err = protojson.Unmarshal(c.Conf, conf)
				}
				if err == nil {
					err = sp.Set(context.Background(), conf, c.Routes)
				}
			case "stop":
				err = sp.Stop()
			case "peers":
				r.Peers = sp.Peers()
			case "metrics":
				r.Metrics, err = gather(reg)
			default:
				err = fmt.Errorf("unknown op %q", c.Op)
			}
		}
		if err != nil {
			r.Err = err.Error()
		}
		if enc.Encode(r) != nil {
			return 1
		}
	}
	return 0
}

// gather returns reg's gauges as name{label="value",...} -> value.
func gather(reg *prometheus.Registry) (map[string]float64, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out, nil
}

// speakerProc is the test's handle on a child speaker.
type speakerProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startSpeaker runs a Speaker inside ns with the node's addresses; it is killed when t ends. Its
// methods take the calling (sub)test, which may be another than t.
func startSpeaker(t testing.TB, ns *netlab.NS, nodeAddrs ...string) *speakerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := ns.Command(exe, "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), speakerEnv+"=1", speakerAddrsEnv+"="+strings.Join(nodeAddrs, " "))
	logPath := filepath.Join(t.TempDir(), "speaker.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = lf
	p := &speakerProc{cmd: cmd}
	if p.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start speaker in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		p.kill()
		lf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("speaker in %s log:\n%s", ns.Name, b)
		}
	})
	return p
}

func (p *speakerProc) call(t testing.TB, c speakerCmd) speakerReply {
	t.Helper()
	b, _ := json.Marshal(c)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		t.Fatalf("speaker %s: %v", c.Op, err)
	}
	if !p.out.Scan() {
		t.Fatalf("speaker %s: no answer: %v", c.Op, p.out.Err())
	}
	var r speakerReply
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
		t.Fatalf("speaker %s: %v", c.Op, err)
	}
	return r
}

// set calls Speaker.Set in the child and returns its error text ("" for none).
func (p *speakerProc) set(t testing.TB, conf *v1.BGPConfig, routes ...string) string {
	t.Helper()
	c := speakerCmd{Op: "set"}
	if conf != nil {
		b, err := protojson.Marshal(conf)
		if err != nil {
			t.Fatal(err)
		}
		c.Conf = b
	}
	for _, r := range routes {
		c.Routes = append(c.Routes, netip.MustParseAddr(r))
	}
	return p.call(t, c).Err
}

// mustSet is set that fails the test on an error.
func (p *speakerProc) mustSet(t testing.TB, conf *v1.BGPConfig, routes ...string) {
	t.Helper()
	if err := p.set(t, conf, routes...); err != "" {
		t.Fatalf("Set: %s", err)
	}
}

func (p *speakerProc) stop(t testing.TB) {
	t.Helper()
	if err := p.call(t, speakerCmd{Op: "stop"}).Err; err != "" {
		t.Fatalf("Stop: %s", err)
	}
}

func (p *speakerProc) peers(t testing.TB) []PeerStatus {
	t.Helper()
	return p.call(t, speakerCmd{Op: "peers"}).Peers
}

func (p *speakerProc) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	r := p.call(t, speakerCmd{Op: "metrics"})
	if r.Err != "" {
		t.Fatalf("metrics: %s", r.Err)
	}
	return r.Metrics
}

// up reports whether the speaker's session with addr is established.
func (p *speakerProc) up(t testing.TB, addr string) bool {
	t.Helper()
	for _, s := range p.peers(t) {
		if s.Address.String() == addr {
			return s.Up
		}
	}
	return false
}

// kill ends the child at once, as a crash would: the kernel closes its sockets (FIN), and no
// NOTIFICATION is sent.
func (p *speakerProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

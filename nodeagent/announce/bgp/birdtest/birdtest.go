// Package birdtest runs BIRD 2 in a network namespace as the router that node speakers peer
// with, for tests of the BGP speaker and end-to-end tests: it accepts the nodes' routes and
// exports them to the namespace's kernel table, merging equal routes into ECMP.
package birdtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
)

// ConfigTemplate is the router's bird.conf, a text/template over Config.
//
//   - The kernel protocols export every BGP route with "merge paths": equal routes from several
//     nodes become one multipath (ECMP) route, as an upstream router spreads a VIP's traffic.
//   - Each neighbor is passive: nodes dial out and never listen on TCP 179.
//   - "graceful restart on" makes BIRD a GR helper: it keeps a restarting node's routes stale.
//   - eBGP needs explicit import/export filters in BIRD 2 (RFC 8212): import all, export none.
const ConfigTemplate = `router id {{.RouterID}};
log stderr all;
protocol device { scan time 10; }
protocol kernel k4 { ipv4 { import none; export all; }; merge paths on; }
protocol kernel k6 { ipv6 { import none; export all; }; merge paths on; }
{{range .Neighbors}}
protocol bgp {{.Name}} {
	local {{.Local}} as {{$.ASN}};
	neighbor {{.Address}} as {{.ASN}};
	passive on;
	graceful restart on;
{{- if .Password}}
	password "{{.Password}}";
{{- end}}
	{{if .IPv6}}ipv6{{else}}ipv4{{end}} { import all; export none; };
}
{{end}}`

// Config is one router.
type Config struct {
	// RouterID is the router's BGP identifier (an IPv4 address).
	RouterID string
	// ASN is the router's AS; nodes peer with it.
	ASN       uint32
	Neighbors []Neighbor
}

// Neighbor is one node session.
type Neighbor struct {
	// Name is the BIRD protocol's name: birdc and Router's methods know the session by it.
	Name string
	// Local is the router's address on the session; Address and ASN are the node's.
	Local, Address string
	ASN            uint32
	// Password is the TCP MD5 key; empty for none.
	Password string
	// IPv6 makes it an IPv6 session (ipv6 channel); the addresses must be IPv6.
	IPv6 bool
}

// Require skips (or, in CI, fails) a test that cannot run BIRD in a namespace.
func Require(t testing.TB) {
	t.Helper()
	netlab.Require(t)
	testenv.RequireCommand(t, "bird")
	testenv.RequireCommand(t, "birdc")
}

// Router is a running BIRD.
type Router struct {
	NS   *netlab.NS
	sock string
	log  string
}

// Render returns c's bird.conf.
func Render(c Config) (string, error) {
	var b bytes.Buffer
	if err := template.Must(template.New("bird").Parse(ConfigTemplate)).Execute(&b, c); err != nil {
		return "", fmt.Errorf("bird config: %w", err)
	}
	return b.String(), nil
}

// Start runs BIRD with c inside ns (not the distribution's service: its own config, control
// socket and foreground process), stopped when t ends; on failure, t's log gets BIRD's log.
func Start(t testing.TB, ns *netlab.NS, c Config) *Router {
	t.Helper()
	conf, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &Router{NS: ns, sock: filepath.Join(dir, "bird.ctl"), log: filepath.Join(dir, "bird.log")}
	cf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	lf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	argv := ns.Command("bird", "-c", cf, "-s", r.sock, "-f")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bird: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		lf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(r.log)
			t.Logf("bird config:\n%s\nbird log:\n%s", conf, b)
		}
	})
	testwait.Eventually(t, "bird answers on its control socket", func() bool {
		_, err := r.Birdc("show", "status")
		return err == nil
	})
	return r
}

// Birdc runs a birdc command on the router's control socket.
func (r *Router) Birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", r.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// RouteAll is `show route for <prefix> all`: the route's BGP attributes (BGP.community...).
func (r *Router) RouteAll(prefix string) string {
	out, _ := r.Birdc("show", "route", "for", prefix, "all")
	return out
}

// Protocol is `show protocols all <name>`: the session's state, capabilities, "Neighbor
// graceful restart active" while it keeps a restarting node's routes, and route counters.
func (r *Router) Protocol(name string) string {
	out, _ := r.Birdc("show", "protocols", "all", name)
	return out
}

// Established reports whether the named session is up.
func (r *Router) Established(name string) bool {
	return establishedRe.MatchString(r.Protocol(name))
}

// Since is when the named protocol last changed state (millisecond resolution): unchanged
// across an operation, the session was not reset.
func (r *Router) Since(name string) string {
	for _, line := range strings.Split(r.Protocol(name), "\n") {
		if f := strings.Fields(line); len(f) >= 5 && f[0] == name {
			return f[4]
		}
	}
	return ""
}

var (
	establishedRe = regexp.MustCompile(`BGP state:\s+Established`)
	viaRe         = regexp.MustCompile(`\bvia (\S+)`)
)

// Nexthops returns the gateways of the router's kernel route to prefix (an exact match),
// sorted: two for an ECMP route from two nodes, none when there is no route.
func (r *Router) Nexthops(prefix string) []string {
	fam := "-4"
	if strings.Contains(prefix, ":") {
		fam = "-6"
	}
	out, err := exec.Command("ip", "-n", r.NS.Name, fam, "route", "show", "exact", prefix).CombinedOutput()
	if err != nil {
		return nil
	}
	var hops []string
	for _, m := range viaRe.FindAllStringSubmatch(string(out), -1) {
		hops = append(hops, m[1])
	}
	slices.Sort(hops)
	return hops
}

// Counter returns a TcpExt counter of the router's namespace (TCPMD5Failure, say).
func (r *Router) Counter(name string) int64 {
	out, err := exec.Command("ip", "netns", "exec", r.NS.Name, "cat", "/proc/net/netstat").Output()
	if err != nil {
		return -1
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(keys) == 0 || keys[0] != "TcpExt:" || len(vals) != len(keys) {
			continue
		}
		for j, k := range keys {
			if k == name {
				v, _ := strconv.ParseInt(vals[j], 10, 64)
				return v
			}
		}
	}
	return -1
}

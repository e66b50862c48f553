package security

import (
	"bufio"
	"context"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestInsecureListensOnLoopbackOnly: --insecure makes every caller an administrator, so the brain
// keeps it to its own host whatever --listen says: asked for 0.0.0.0 it binds 127.0.0.1, and says
// so in its log.
func TestInsecureListensOnLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	brain := proc.StartBrain(t, "0.0.0.0:"+port, append(proc.EtcdArgs(t, dir), "--insecure")...)
	brain.WaitReady(t)

	bound := listeners(t, port)
	if len(bound) == 0 {
		t.Fatalf("no socket listens on port %s", port)
	}
	for _, ip := range bound {
		if !ip.IsLoopback() {
			t.Errorf("the insecure brain listens on %s:%s", ip, port)
		}
	}
	// And from another address of this host, nothing answers.
	if ip := nonLoopbackAddr(); ip != nil {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), port), 5*time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("the insecure brain accepted a connection on %s", ip)
		}
	} else {
		t.Log("this host has no address besides loopback: only the socket table was checked")
	}
	// On loopback it answers in plaintext, to anyone, as an administrator.
	admin := v1.NewAdminServiceClient(dial(t, net.JoinHostPort("127.0.0.1", port), nil))
	if _, err := call(func(ctx context.Context) error { _, err := admin.Get(ctx, &v1.GetRequest{}); return err }); err != nil {
		t.Errorf("plaintext Get on loopback: %v (brain exited: %v)", err, brain.Exited())
	}
	if !strings.Contains(brain.Output(), "INSECURE") {
		t.Errorf("the brain did not warn that it runs insecure:\n%s", proc.Tail(brain.Output(), 4000))
	}
}

// listeners returns the addresses TCP sockets in LISTEN state are bound to on port, from the
// kernel's socket tables, which say what was bound whatever the program logged.
func listeners(t *testing.T, port string) []net.IP {
	t.Helper()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	var out []net.IP
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			const listen = "0A"
			if len(fields) < 4 || fields[3] != listen {
				continue
			}
			addr, hexPort, ok := strings.Cut(fields[1], ":")
			if n, err := strconv.ParseUint(hexPort, 16, 16); !ok || err != nil || int(n) != p {
				continue
			}
			out = append(out, kernelIP(t, addr))
		}
		f.Close()
	}
	return out
}

// kernelIP decodes an address of /proc/net/tcp{,6}: hex, in 32-bit words of host (little-endian)
// byte order.
func kernelIP(t *testing.T, s string) net.IP {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		t.Fatalf("socket table address %q", s)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

// nonLoopbackAddr is an IPv4 address of this host that is not loopback, or nil.
func nonLoopbackAddr() net.IP {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	return nil
}

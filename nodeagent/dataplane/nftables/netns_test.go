package nftables

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// requireNetns skips (or fails in CI) unless the test can create network namespaces and run nft.
func requireNetns(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "nft")
}

// netNS is a named network namespace removed when the test ends.
type netNS struct {
	name string
	h    netns.NsHandle
}

func uniqueID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newNS(t testing.TB, name string) *netNS {
	t.Helper()
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	n := &netNS{name: name, h: h}
	n.sh(t, "ip", "link", "set", "lo", "up")
	return n
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (n *netNS) sh(t testing.TB, args ...string) string {
	t.Helper()
	return sh(t, append([]string{"ip", "netns", "exec", n.name}, args...)...)
}

// do runs fn on an OS thread switched into the namespace. Sockets created inside stay in it.
func (n *netNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked on purpose if switching back fails: the runtime then
		// discards it instead of reusing a thread in the wrong namespace.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			errc <- err
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// serve starts TCP and UDP servers on port in ns. Each answers "<name> <client address>" and then,
// for TCP, echoes lines, so a test can tell which backend it reached and what source it saw.
func serve(t testing.TB, n *netNS, name string, port int) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := n.do(func() error {
		var err error
		if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("serve in %s: %v", n.name, err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s %s\n", name, hostOf(c.RemoteAddr().String()))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s %s", name, line)
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s\n", name, hostOf(addr.String()))), addr)
		}
	}()
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

// dialTimeout bounds attempts that are expected to be dropped; it is a bound, never an assertion.
const dialTimeout = 2 * time.Second

// tcpAsk connects from ns and returns the server's greeting: "<backend> <source it saw>".
func tcpAsk(n *netNS, addr string) (string, error) {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, dialTimeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// udpAsk sends one datagram from ns and returns the answer.
func udpAsk(n *netNS, addr string) (string, error) {
	var c net.Conn
	if err := n.do(func() error {
		var err error
		c, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	return udpRoundTrip(c)
}

func udpRoundTrip(c net.Conn) (string, error) {
	buf := make([]byte, 1500)
	for range 3 { // UDP may lose the first datagram while neighbours are resolved
		if _, err := c.Write([]byte("hi")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(dialTimeout / 2))
		n, err := c.Read(buf)
		if err == nil {
			return strings.TrimSpace(string(buf[:n])), nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return "", err
		}
	}
	return "", os.ErrDeadlineExceeded
}

func isRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection refused")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

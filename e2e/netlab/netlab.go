// Package netlab builds small networks of Linux network namespaces for end-to-end tests: nodes,
// pods and clients joined by veth pairs and bridges, with servers and clients running inside
// them from the test process. Everything a lab creates is removed when its test ends.
package netlab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// Require skips (or, in CI, fails) a test that cannot build namespaces and program nftables.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "nft")
}

// UniqueID returns a short random id for names that must not collide across test runs.
func UniqueID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NS is a named network namespace.
type NS struct {
	Name string
	h    netns.NsHandle
}

// NewNS creates a namespace with lo up, removed when t ends.
func NewNS(t testing.TB, name string) *NS {
	t.Helper()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	n := &NS{Name: name, h: h}
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// OpenNS opens the existing namespace name, for one that outlives a test (one a whole test run
// shares, say): the caller removes the namespace, and Close releases the NS.
func OpenNS(name string) (*NS, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	return &NS{Name: name, h: h}, nil
}

// Close releases an NS from OpenNS; NewNS's are released when their test ends.
func (n *NS) Close() error { return n.h.Close() }

// Run runs a command and fails t if it fails.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Run runs a command inside the namespace.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	return Run(t, n.Command(args...)...)
}

// FD returns the namespace's file descriptor, for APIs that take one.
func (n *NS) FD() int { return int(n.h) }

// Command returns the argv that runs args inside the namespace.
func (n *NS) Command(args ...string) []string {
	return append([]string{"ip", "netns", "exec", n.Name}, args...)
}

// Do runs fn on an OS thread switched into the namespace. Sockets created inside stay in it.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- n.DoHere(fn) }()
	return <-errc
}

// DoHere is Do on the calling goroutine, for a fn that must run there: one that calls t.Fatal,
// say. Processes fn starts are forked from the switched thread, so they run in the namespace too.
func (n *NS) DoHere(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(n.h); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	err = fn()
	if serr := netns.Set(orig); serr != nil {
		// The thread stays locked: the runtime discards it when the goroutine ends rather than
		// reuse a thread in the wrong namespace.
		return errors.Join(err, serr)
	}
	runtime.UnlockOSThread()
	return err
}

// DialNet connects from the namespace; a zero timeout means none.
func (n *NS) DialNet(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// Serve starts TCP and UDP servers on port in the namespace. Each answers "<name> <client
// address>" and then, for TCP, answers every line the same way, so a test learns which backend
// it reached and what source address that backend saw, on a new or a long-lived connection.
func (n *NS) Serve(t testing.TB, name string, port int) {
	t.Helper()
	stop, err := n.Listen(name, port)
	if err != nil {
		t.Fatalf("serve in %s: %v", n.Name, err)
	}
	t.Cleanup(stop)
}

// Listen starts the servers Serve starts, for servers that outlive a test (see OpenNS): stop
// closes them.
func (n *NS) Listen(name string, port int) (stop func(), err error) {
	var ln net.Listener
	var pc net.PacketConn
	err = n.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				greet := fmt.Sprintf("%s %s\n", name, hostOf(c.RemoteAddr().String()))
				_, _ = c.Write([]byte(greet))
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					_, _ = c.Write([]byte(greet))
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
	return func() { ln.Close(); pc.Close() }, nil
}

func hostOf(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

// DialTimeout bounds attempts that may be dropped; it is a bound, never an assertion.
const DialTimeout = 2 * time.Second

// HTTPClient returns a client whose connections are made from inside the namespace.
func (n *NS) HTTPClient() *http.Client {
	return &http.Client{Timeout: DialTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := n.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// Conn is a long-lived TCP connection to a Serve server.
type Conn struct {
	c net.Conn
	r *bufio.Reader
	// Greeting is the server's first line: "<backend> <source it saw>".
	Greeting string
}

// Dial connects from the namespace and reads the greeting.
func (n *NS) Dial(addr string) (*Conn, error) {
	c, err := n.DialNet("tcp", addr, DialTimeout)
	if err != nil {
		return nil, err
	}
	conn := &Conn{c: c, r: bufio.NewReader(c)}
	_ = c.SetDeadline(time.Now().Add(DialTimeout))
	line, err := conn.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	conn.Greeting = strings.TrimSpace(line)
	return conn, nil
}

// Ask sends a line on the connection and returns the answer.
func (c *Conn) Ask() (string, error) {
	_ = c.c.SetDeadline(time.Now().Add(DialTimeout))
	if _, err := c.c.Write([]byte("again\n")); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	return strings.TrimSpace(line), err
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// AskTCP connects from the namespace and returns the greeting.
func (n *NS) AskTCP(addr string) (string, error) {
	c, err := n.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.Greeting, nil
}

// AskUDP sends a datagram from the namespace and returns the answer.
func (n *NS) AskUDP(addr string) (string, error) {
	c, err := n.DialNet("udp", addr, 0)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return UDPRoundTrip(c)
}

// UDPRoundTrip sends a datagram on c, a UDP conn, and returns the answer: on an existing conn it
// keeps its 5-tuple, so a test can follow one flow across changes.
func UDPRoundTrip(c net.Conn) (string, error) {
	buf := make([]byte, 1500)
	for range 3 { // the first datagram may be lost while neighbours are resolved
		if _, err := c.Write([]byte("hi")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(DialTimeout / 2))
		k, err := c.Read(buf)
		if err == nil {
			return strings.TrimSpace(string(buf[:k])), nil
		}
		if !IsTimeout(err) {
			return "", err
		}
	}
	return "", os.ErrDeadlineExceeded
}

// Backend and Source split a greeting.
func Backend(greeting string) string { b, _, _ := strings.Cut(greeting, " "); return b }

// Source returns the client address a backend saw.
func Source(greeting string) string { _, s, _ := strings.Cut(greeting, " "); return s }

// IsRefused reports a refused connection.
func IsRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection refused")
}

// IsTimeout reports a timed-out attempt: a dropped packet.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// FreeAddr returns a loopback host:port nothing listens on, for a process the test starts
// later. The port is drawn below the kernel's ephemeral range: a port the kernel picked for
// ":0" can be handed to an outgoing connection before the process binds it, and that process
// then fails to start (the likely way CI lost an etcd member, and with it a test's quorum).
func FreeAddr(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	for range 1000 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use: draw again
		}
		addr := l.Addr().String()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return addr
	}
	t.Fatalf("no free loopback port between 10000 and %d", low)
	return ""
}

// ephemeralLow is the first port the kernel hands to outgoing connections (Linux's default
// when the setting cannot be read).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var hi int
		if _, err := fmt.Sscan(string(b), &low, &hi); err != nil || low <= 10000 {
			low = 32768
		}
	}
	return low
}

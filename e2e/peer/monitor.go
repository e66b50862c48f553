package peer

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
)

// Monitor listens to one network namespace's nftables notifications and notes when each address
// it was told to expect first appears in an added object. The kernel sends the notifications of
// a transaction when it commits, so that moment is when the address took effect, for either
// proxy; nothing here lists or dumps the ruleset (a dump of 10,000 services takes seconds).
type Monitor struct {
	fd   int
	stop atomic.Bool
	done chan struct{}

	mu    sync.Mutex
	want  map[[4]byte]*Sighting
	first [256]bool

	// Messages counts notifications read; Drops counts ENOBUFS, notifications the kernel could
	// not queue (a sighting then may never come, and the run says so).
	Messages, Drops atomic.Int64
}

// Sighting is when an expected address first appeared.
type Sighting struct {
	seen chan struct{}
	at   time.Time
}

// Wait returns when the address appeared, or false after timeout.
func (s *Sighting) Wait(timeout time.Duration) (time.Time, bool) {
	select {
	case <-s.seen:
		return s.at, true
	case <-time.After(timeout):
		return time.Time{}, false
	}
}

// Seen reports whether the address has appeared, and when.
func (s *Sighting) Seen() (time.Time, bool) {
	select {
	case <-s.seen:
		return s.at, true
	default:
		return time.Time{}, false
	}
}

// Listen subscribes to ns's nftables notifications. Close ends it.
func Listen(ns *netlab.NS) (*Monitor, error) {
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (nfnlgrpNFTables - 1)})
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("nftables monitor in %s: %w", ns.Name, err)
	}
	// A proxy's first sync of 10,000 services notifies hundreds of thousands of objects at once.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 512<<20); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nftables monitor receive buffer: %w", err)
	}
	// Receives wake up this often to see whether Close was called.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	m := &Monitor{fd: fd, done: make(chan struct{}), want: map[[4]byte]*Sighting{}}
	go m.run()
	return m, nil
}

// Expect returns a sighting per IPv4 address, in order. Call it before the change that brings
// the addresses in.
func (m *Monitor) Expect(addrs ...netip.Addr) []*Sighting {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Sighting, len(addrs))
	for i, a := range addrs {
		k := a.As4()
		s, ok := m.want[k]
		if !ok {
			s = &Sighting{seen: make(chan struct{})}
			m.want[k] = s
			m.first[k[0]] = true
		}
		out[i] = s
	}
	return out
}

// Forget stops expecting addrs (those never seen: a timed-out change).
func (m *Monitor) Forget(addrs ...netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range addrs {
		delete(m.want, a.As4())
	}
}

// Close stops listening.
func (m *Monitor) Close() {
	if m.stop.Swap(true) {
		return
	}
	<-m.done
	unix.Close(m.fd)
}

func (m *Monitor) run() {
	defer close(m.done)
	buf := make([]byte, 1<<20)
	for !m.stop.Load() {
		n, _, err := unix.Recvfrom(m.fd, buf, 0)
		at := time.Now()
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			m.Drops.Add(1)
			continue
		case err != nil:
			return
		}
		msgs, _ := splitMessages(buf[:n])
		m.Messages.Add(int64(len(msgs)))
		m.note(msgs, at)
	}
}

// note marks every expected address that an added object among msgs carries as seen at.
func (m *Monitor) note(msgs []nlMessage, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range msgs {
		if len(m.want) == 0 {
			return
		}
		if !addsObject(msg.Type) || len(msg.Payload) < nfgenmsgLen {
			continue
		}
		windows(msg.Payload[nfgenmsgLen:], &m.first, func(k [4]byte) bool {
			if s, ok := m.want[k]; ok {
				s.at = at
				close(s.seen)
				delete(m.want, k)
			}
			return len(m.want) > 0
		})
	}
}

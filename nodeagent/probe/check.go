package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// checker runs one probe of one endpoint within ctx; an error is a failure, and says why (it is
// reported to the brain, where describe shows it).
type checker func(ctx context.Context) error

// Reasons a check is refused before it runs.
var (
	ErrNoAction       = errors.New("health check has no action")
	ErrNotAnAddress   = errors.New("endpoint address is not an IP address")
	ErrPathNotAllowed = errors.New("httpGet path is not a plain absolute path")
	ErrExecNotAllowed = errors.New("exec command is not in this agent's --exec-allow")
)

// compile turns a health check into a checker bound to one endpoint, once per worker, so that
// what the brain sent is judged once and every refusal has one reason to log.
func (p *Prober) compile(hc *v1.HealthCheck, addr string, port uint32) (checker, error) {
	// Only an IP literal: a name would be resolved, and could resolve anywhere.
	if _, err := netip.ParseAddr(addr); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotAnAddress, addr)
	}
	hostPort := func(override uint32) string {
		if override == 0 {
			override = port
		}
		return net.JoinHostPort(addr, strconv.Itoa(int(override)))
	}
	switch a := hc.GetAction().(type) {
	case *v1.HealthCheck_HttpGet:
		return httpGetChecker(a.HttpGet, hostPort(a.HttpGet.GetPort()))
	case *v1.HealthCheck_TcpSocket:
		return tcpChecker(hostPort(a.TcpSocket.GetPort())), nil
	case *v1.HealthCheck_Exec:
		return p.execChecker(a.Exec.GetCommand(), addr, port)
	}
	return nil, ErrNoAction
}

// tcpChecker passes when a connection to hostPort opens.
func tcpChecker(hostPort string) checker {
	return func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", hostPort)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// errNotLoopback refuses a debug address reachable from outside the host: profiles and goroutine
// dumps show internals (and cost CPU), so they are for someone already on the machine.
var errNotLoopback = errors.New("not a loopback address")

// debugMux serves pprof under /debug/pprof/. It is its own mux: importing net/http/pprof for its
// side effect would also put the profiles on http.DefaultServeMux, wherever that is served.
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// checkLoopback accepts host:port only when host is a loopback IP or localhost.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--debug-listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--debug-listen %q: %w", addr, errNotLoopback)
	}
	return nil
}

// startDebug listens on addr (loopback only) and serves pprof until the process ends. It returns
// once the listener is open, so a bad address fails the start rather than a later request, and
// the address it listens on.
func startDebug(addr string, log *slog.Logger) (*http.Server, net.Addr, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--debug-listen: %w", err)
	}
	// No write timeout: a CPU profile or trace streams for as long as it was asked to run.
	srv := &http.Server{Handler: debugMux(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug server", "err", err)
		}
	}()
	log.Info("debug listener (pprof)", "addr", lis.Addr().String())
	return srv, lis.Addr(), nil
}

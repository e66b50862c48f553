// Command ganglion-agent is Ganglion's node agent: it streams its node's desired state from the
// brain and applies it to the kernel.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "ganglion-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ganglion-agent", flag.ContinueOnError)
	hostname, _ := os.Hostname()
	nodeName := fs.String("node-name", envOr("NODE_NAME", hostname), "this node's name (env NODE_NAME)")
	brains := fs.String("brain", os.Getenv("GANGLION_BRAIN"), "comma-separated brain addresses host:port (env GANGLION_BRAIN)")
	backend := fs.String("dataplane", "recording", "recording (in memory, programs nothing)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *brains == "" {
		return errors.New("--brain: required")
	}
	if *nodeName == "" {
		return errors.New("--node-name: required")
	}
	var dp dataplane.Dataplane
	switch *backend {
	case "recording":
		dp = dataplane.NewRecording()
	default:
		return fmt.Errorf("--dataplane: unknown backend %q", *backend)
	}
	defer dp.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	agent := stream.New(stream.Config{
		NodeName:     *nodeName,
		AgentVersion: version,
		Brains:       strings.Split(*brains, ","),
		Dataplane:    dp,
		Log:          log,
	})
	log.Info("agent starting", "node", *nodeName, "brains", *brains, "dataplane", *backend)
	return agent.Run(ctx)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

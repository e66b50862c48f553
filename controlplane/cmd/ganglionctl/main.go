// Command ganglionctl manages bare-metal services, endpoints and nodes through the brain's admin
// API, and explains what each node does with a service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

const usage = `usage: ganglionctl [--server host:port] <command> ...

commands:
  apply -f FILE|DIR|- [-f ...] [--dry-run]   store documents (all or none)
  get KIND [NAME] [-n NS] [-o table|yaml|json]
  delete KIND NAME [-n NS]                    delete one object
  delete -f FILE|DIR|-                        delete the objects a file defines
  describe service NAME [-n NS] [--node N]    the stored service and how each node uses it
  nodes                                       every node the brain knows, connected or not, and its sync
  pki init|issue ...                          create a CA, issue node, admin, reader and server certificates

KIND: service (svc), endpointslice, node (no). --server defaults to $GANGLION_SERVER or 127.0.0.1:7070.
TLS: --cert, --key, --ca; by default the local admin credential and CA in --pki-dir
(/var/lib/ganglion/pki, where a brain with no PKI flags creates them). --insecure for plaintext.
`

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		if s, ok := status.FromError(err); ok {
			err = errors.New(s.Message())
		}
		fmt.Fprintln(os.Stderr, "ganglionctl:", err)
		os.Exit(1)
	}
}

// client is a connection to the brain.
type client struct {
	admin   v1.AdminServiceClient
	inspect v1.InspectServiceClient
	out     io.Writer
	in      io.Reader
}

func run(args []string, in io.Reader, out io.Writer) error {
	global := flag.NewFlagSet("ganglionctl", flag.ContinueOnError)
	server := global.String("server", envOr("GANGLION_SERVER", "127.0.0.1:7070"), "the brain's gRPC address")
	var creds credFlags
	creds.register(global)
	global.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	if err := global.Parse(args); err != nil {
		return err
	}
	if global.NArg() == 0 {
		global.Usage()
		return errors.New("a command is required")
	}
	if global.Arg(0) == "pki" {
		return runPKI(global.Args()[1:], out)
	}
	dial, err := creds.dialOption()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*server, dial)
	if err != nil {
		return fmt.Errorf("--server %s: %w", *server, err)
	}
	defer conn.Close()
	c := &client{admin: v1.NewAdminServiceClient(conn), inspect: v1.NewInspectServiceClient(conn), out: out, in: in}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, rest := global.Arg(0), global.Args()[1:]
	switch cmd {
	case "apply":
		return c.apply(ctx, rest)
	case "get":
		return c.get(ctx, rest)
	case "delete":
		return c.delete(ctx, rest)
	case "describe":
		return c.describe(ctx, rest)
	case "nodes":
		return c.nodes(ctx)
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

// parseInterleaved parses flags that may come before, between or after positional arguments,
// as kubectl users type them.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// files is a repeatable -f flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(s string) error { *f = append(*f, s); return nil }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Command ganglionctl manages bare-metal services, endpoints and nodes through the brain's admin
// API, and explains what each node does with a service. It follows kubectl's conventions: global
// flags anywhere on the line, -n/-A, -o table|wide|json|yaml, exit status 0 or 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/internal/grpcopts"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func main() {
	err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, errDifferences) {
		if s, ok := status.FromError(err); ok {
			err = errors.New(s.Message())
		}
		fmt.Fprintln(os.Stderr, "ganglionctl:", err)
	}
	os.Exit(exitCode(err))
}

// exitCode is 0 on success and 1 on failure; diff exits 1 for differences and 2 for its failures.
func exitCode(err error) int {
	var failed diffFailed
	switch {
	case err == nil:
		return 0
	case errors.As(err, &failed):
		return 2
	}
	return 1
}

// run executes one command line; tests call it in process.
func run(args []string, in io.Reader, out, errOut io.Writer) error {
	root := newRoot(&client{in: in, out: out})
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	return root.Execute()
}

// client holds the global options and, once a command needs it, the connection to the brain.
type client struct {
	server    string
	namespace string
	timeout   time.Duration
	creds     credFlags

	admin   v1.AdminServiceClient
	inspect v1.InspectServiceClient
	out     io.Writer
	in      io.Reader
}

func newRoot(c *client) *cobra.Command {
	root := &cobra.Command{
		Use:   "ganglionctl",
		Short: "Manage Ganglion's bare-metal services and ask the brain what each node does",
		Long: `ganglionctl stores services, endpoint slices and nodes through the brain's admin API and
explains, node by node, what each node does with a service.

TLS: --cert, --key, --ca; by default the local admin credential and CA in --pki-dir
(/var/lib/ganglion/pki, where a brain with no PKI flags creates them). --insecure for plaintext.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.server, "server", envOr("GANGLION_SERVER", "127.0.0.1:7070"), "the brain's gRPC address (env GANGLION_SERVER)")
	pf.StringVarP(&c.namespace, "namespace", "n", "default", "the namespace of namespaced objects")
	pf.DurationVar(&c.timeout, "request-timeout", 30*time.Second, "how long one command may wait for the brain")
	c.creds.register(pf)
	root.AddCommand(c.applyCmd(), c.getCmd(), c.deleteCmd(), c.describeCmd(), c.diffCmd(), c.nodesCmd(), pkiCmd())
	return root
}

// withBrain runs fn with a connection to the brain and a deadline for the whole command.
func (c *client) withBrain(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		dial, err := c.creds.dialOption()
		if err != nil {
			return err
		}
		// Large applies and listings: the brain accepts messages up to grpcopts.MaxMessage.
		sizes := grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcopts.MaxMessage), grpc.MaxCallSendMsgSize(grpcopts.MaxMessage))
		conn, err := grpc.NewClient(c.server, dial, sizes)
		if err != nil {
			return fmt.Errorf("--server %s: %w", c.server, err)
		}
		defer conn.Close()
		c.admin, c.inspect = v1.NewAdminServiceClient(conn), v1.NewInspectServiceClient(conn)
		ctx, cancel := context.WithTimeout(cmd.Context(), c.timeout)
		defer cancel()
		return fn(ctx, args)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

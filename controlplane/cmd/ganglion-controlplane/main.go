// Command ganglion-controlplane is Ganglion's brain: it watches the source of truth, computes every
// node's desired state and streams it to the agents.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: ganglion-controlplane <command> [flags]

commands:
  serve   run the brain: compute from --manifests and serve agents, inspect and health over gRPC
  demo    compute the built-in example cluster (or -f manifests) and print each node's state
  version print the version
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = runServe(os.Args[2:])
	case "demo":
		err = runDemo(os.Args[2:], os.Stdout)
	case "version", "--version":
		fmt.Println("ganglion-controlplane", version)
		return
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ganglion-controlplane:", err)
		os.Exit(1)
	}
}

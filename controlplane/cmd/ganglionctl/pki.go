package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

const pkiUsage = `usage:
  ganglionctl pki init --dir DIR [--days N]
      create a CA in DIR (ca.crt, ca.key)
  ganglionctl pki issue ROLE NAME --dir DIR [--out DIR] [--days N] [--san NAMES]
      issue a certificate from the CA in DIR: OUT/NAME.crt and OUT/NAME.key
      ROLE: node (an agent; NAME is its node name), admin (apply, delete, read),
            reader (get, describe, nodes), server (a brain; --san its names and addresses)
`

// runPKI creates a CA and issues certificates. It needs no brain: it runs where the CA key is.
func runPKI(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("pki: a subcommand is required\n" + pkiUsage)
	}
	fs := flag.NewFlagSet("pki "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", defaultPKIDir, "the CA's directory (ca.crt, ca.key)")
	outDir := fs.String("out", ".", "with issue: where to write NAME.crt and NAME.key")
	days := fs.Int("days", 0, "validity in days (default: 3650 for a CA, 365 for a certificate)")
	sans := fs.String("san", "", "with issue: comma-separated DNS names and IP addresses")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	switch args[0] {
	case "init":
		if len(pos) != 0 {
			return errors.New("pki init: takes no arguments")
		}
		_, created, err := pki.EnsureCA(*dir, time.Duration(*days)*24*time.Hour)
		if err != nil {
			return err
		}
		if !created {
			return fmt.Errorf("pki init: %s already holds a CA", *dir)
		}
		fmt.Fprintf(out, "CA created: %s\n", filepath.Join(*dir, pki.CACert))
		return nil
	case "issue":
		if len(pos) != 2 {
			return errors.New("pki issue: want ROLE NAME\n" + pkiUsage)
		}
		role, err := pki.ParseRole(pos[0])
		if err != nil {
			return fmt.Errorf("pki issue: %w", err)
		}
		ca, err := pki.LoadCA(filepath.Join(*dir, pki.CACert), filepath.Join(*dir, pki.CAKey))
		if err != nil {
			return fmt.Errorf("pki issue: --dir: %w", err)
		}
		req := pki.Request{Role: role, Name: pos[1], Validity: time.Duration(*days) * 24 * time.Hour}
		req.DNSNames, req.IPs = pki.SplitSANs(strings.Split(*sans, ","))
		cert, key, err := ca.Issue(req)
		if err != nil {
			return fmt.Errorf("pki issue: %w", err)
		}
		if err := pki.WritePair(*outDir, pos[1], cert, key); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s certificate for %s: %s\n", role, pos[1], filepath.Join(*outDir, pos[1]+".crt"))
		return nil
	}
	return fmt.Errorf("pki: unknown subcommand %q\n%s", args[0], pkiUsage)
}

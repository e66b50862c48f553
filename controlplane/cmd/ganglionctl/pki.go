package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// pkiCmd creates a CA and issues certificates. It needs no brain: it runs where the CA key is.
func pkiCmd() *cobra.Command {
	var dir, outDir, sans string
	var days int
	root := &cobra.Command{
		Use:   "pki",
		Short: "Create a CA and issue node, admin, reader and server certificates (where the CA key is; no brain needed)",
	}
	root.PersistentFlags().StringVar(&dir, "dir", defaultPKIDir, "the CA's directory (ca.crt, ca.key)")
	root.PersistentFlags().IntVar(&days, "days", 0, "validity in days (default: 3650 for a CA, 365 for a certificate)")
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a CA in --dir (ca.crt, ca.key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, created, err := pki.EnsureCA(dir, time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			if !created {
				return fmt.Errorf("pki init: %s already holds a CA", dir)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA created: %s\n", filepath.Join(dir, pki.CACert))
			return nil
		},
	}
	issueCmd := &cobra.Command{
		Use:   "issue ROLE NAME",
		Short: "Issue a certificate from the CA in --dir: OUT/NAME.crt and OUT/NAME.key",
		Long: `Issue a certificate from the CA in --dir: OUT/NAME.crt and OUT/NAME.key.
ROLE: node (an agent; NAME is its node name), admin (apply, delete, read),
reader (get, describe, nodes), server (a brain; --san its names and addresses).`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"node", "admin", "reader", "server"},
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := pki.ParseRole(args[0])
			if err != nil {
				return fmt.Errorf("pki issue: %w", err)
			}
			ca, err := pki.LoadCA(filepath.Join(dir, pki.CACert), filepath.Join(dir, pki.CAKey))
			if err != nil {
				return fmt.Errorf("pki issue: --dir: %w", err)
			}
			req := pki.Request{Role: role, Name: args[1], Validity: time.Duration(days) * 24 * time.Hour}
			req.DNSNames, req.IPs = pki.SplitSANs(strings.Split(sans, ","))
			cert, key, err := ca.Issue(req)
			if err != nil {
				return fmt.Errorf("pki issue: %w", err)
			}
			if err := pki.WritePair(outDir, args[1], cert, key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s certificate for %s: %s\n", role, args[1], filepath.Join(outDir, args[1]+".crt"))
			return nil
		},
	}
	issueCmd.Flags().StringVar(&outDir, "out", ".", "where to write NAME.crt and NAME.key")
	issueCmd.Flags().StringVar(&sans, "san", "", "comma-separated DNS names and IP addresses")
	root.AddCommand(initCmd, issueCmd)
	return root
}

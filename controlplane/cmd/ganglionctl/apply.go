package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ganglion-proxy/ganglion/internal/grpcopts"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func (c *client) applyCmd() *cobra.Command {
	var files []string
	var dry bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Store the documents of files, directories or stdin: all of them or none",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory (its *.yaml, *.yml, *.json) or - for stdin; repeatable")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "validate only; store nothing")
	_ = cmd.MarkFlagRequired("filename")
	cmd.RunE = c.withBrain(func(ctx context.Context, _ []string) error {
		docs, err := c.readDocuments(files)
		if err != nil {
			return err
		}
		resp, err := c.admin.Apply(ctx, &v1.ApplyRequest{Documents: docs, DryRun: dry})
		if err != nil {
			return err
		}
		suffix := ""
		if dry {
			suffix = " (dry run)"
		}
		for _, r := range resp.Applied {
			fmt.Fprintf(c.out, "%s applied%s\n", refString(r), suffix)
		}
		for _, r := range resp.Unchanged {
			fmt.Fprintf(c.out, "%s unchanged\n", refString(r))
		}
		return nil
	})
	return cmd
}

// readDocuments reads files, directories (their *.yaml, *.yml and *.json) and "-" for stdin.
func (c *client) readDocuments(paths []string) ([]*v1.Document, error) {
	var docs []*v1.Document
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(c.in)
			if err != nil {
				return nil, fmt.Errorf("stdin: %w", err)
			}
			docs = append(docs, &v1.Document{Source: "stdin", Content: string(b)})
			continue
		}
		list, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, f := range list {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			docs = append(docs, &v1.Document{Source: f, Content: string(b)})
		}
	}
	if len(docs) == 0 {
		return nil, errors.New("-f: no files")
	}
	size := 0
	for _, d := range docs {
		size += len(d.Content)
	}
	// Leave room for the request's framing; the brain would refuse the message with a bare gRPC error.
	if limit := grpcopts.MaxMessage - 1<<20; size > limit {
		return nil, fmt.Errorf("-f: the documents hold %d MiB; one request carries at most %d MiB: apply them in parts", size>>20, limit>>20)
	}
	return docs, nil
}

// expand lists a directory's manifest files in name order, or returns a file as it is.
func expand(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var list []string
	for _, pat := range []string{"*.yaml", "*.yml", "*.json"} {
		m, _ := filepath.Glob(filepath.Join(p, pat))
		list = append(list, m...)
	}
	slices.Sort(list)
	return list, nil
}

func refString(r *v1.ObjectRef) string {
	if r.Namespace == "" {
		return strings.ToLower(r.Kind) + "/" + r.Name
	}
	return strings.ToLower(r.Kind) + "/" + r.Namespace + "/" + r.Name
}

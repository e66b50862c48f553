package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// outputFormats are kubectl's: a table, a wider table, or the objects themselves.
var outputFormats = []string{"table", "wide", "json", "yaml"}

// outputFlag adds -o and checks its value before the command runs, so a typo costs no request.
func outputFlag(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", "table", "table, wide, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputFormats, cobra.ShellCompDirectiveNoFileComp))
	prev := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if !slices.Contains(outputFormats, *output) {
			return fmt.Errorf("--output: %q is not one of table, wide, json, yaml", *output)
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
}

// printStructured writes v as indented JSON or as YAML; it reports false for table formats.
func printStructured(w io.Writer, format string, v any) (bool, error) {
	if format != "json" && format != "yaml" {
		return false, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "a -> b" stays readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return true, err
	}
	b := buf.Bytes()
	if format == "yaml" {
		var err error
		if b, err = yaml.JSONToYAML(b); err != nil {
			return true, err
		}
	}
	_, err := w.Write(b)
	return true, err
}

// jsonRaw is JSON already encoded, printed as it is.
type jsonRaw []byte

func (j jsonRaw) MarshalJSON() ([]byte, error) { return j, nil }

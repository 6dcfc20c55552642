package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newDocsCmd writes the man pages and shell completions the Debian package
// ships (make deb); hidden, as it is for packagers.
func newDocsCmd(root func() *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "docs DIR",
		Short:  "Write man pages (DIR/man) and bash, zsh and fish completions (DIR/completions)",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(_ *cobra.Command, args []string) error {
			man, comp := filepath.Join(args[0], "man"), filepath.Join(args[0], "completions")
			for _, d := range []string{man, comp} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			r := root()
			r.DisableAutoGenTag = true
			if err := doc.GenManTree(r, &doc.GenManHeader{Title: "SYNCER", Section: "1", Source: "syncer " + version}, man); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			for _, c := range []struct {
				name string
				gen  func(string) error
			}{{"syncer.bash", func(p string) error { return r.GenBashCompletionFileV2(p, true) }},
				{"_syncer", r.GenZshCompletionFile}, {"syncer.fish", func(p string) error { return r.GenFishCompletionFile(p, true) }}} {
				if err := c.gen(filepath.Join(comp, c.name)); err != nil {
					return fmt.Errorf("completion %s: %w", c.name, err)
				}
			}
			return nil
		},
	}
}

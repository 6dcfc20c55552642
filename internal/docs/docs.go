// Package docs writes what a package ships besides the binary: man pages
// generated from the cobra commands and shell completions.
package docs

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Write writes the man pages of r and its subcommands to dir/man (section
// 1, titled with version) and bash, zsh and fish completions to
// dir/completions.
func Write(r *cobra.Command, version, dir string) error {
	man, comp := filepath.Join(dir, "man"), filepath.Join(dir, "completions")
	for _, d := range []string{man, comp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
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
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/syncer/syncer/internal/docs"
)

// newDocsCmd writes the man pages and shell completions the Debian package
// ships (make deb); hidden, as it is for packagers.
func newDocsCmd(root func() *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "docs DIR",
		Short:  "Write man pages (DIR/man) and bash, zsh and fish completions (DIR/completions)",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE:   func(_ *cobra.Command, args []string) error { return docs.Write(root(), version, args[0]) },
	}
}

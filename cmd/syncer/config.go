package main

import (
	"github.com/spf13/pflag"

	"github.com/syncer/syncer/config"
)

// addFlags registers the flags of every config.Config field on fs, those
// not in shown (when given) hidden from --help.
func addFlags(fs *pflag.FlagSet, c *config.Config, shown ...string) {
	config.Flags(fs, c)
	if shown != nil {
		config.HideFlags(fs, shown)
	}
}

// loadConfig builds the effective config: defaults < file < SYNCER_* env < flags set on fs.
func loadConfig(path string, fs *pflag.FlagSet, flagged config.Config) (config.Config, error) {
	return config.Load(path, flagged, func(flag string) bool { fl := fs.Lookup(flag); return fl != nil && fl.Changed })
}

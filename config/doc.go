// Package config is every setting of syncer in one type: its defaults, its
// validation (every problem at once, before anything starts, touching
// nothing) and what each component needs from it. The YAML keys, flag
// names and SYNCER_* variables derive from the field tags; cmd/syncer reads
// them.
//
// It imports the pipeline packages for their option types and defaults;
// none of them imports it.
package config

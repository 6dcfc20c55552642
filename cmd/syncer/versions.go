package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/versions"
)

func newVersionsCmd(stdout, stderr io.Writer) *cobra.Command {
	var configPath string
	var asJSON bool
	flags := config.Default()
	cmd := &cobra.Command{
		Use:   "versions PATH",
		Short: "List the kept versions of a file, a directory or a project",
		Long: `versions lists every version of PATH (a file, or every file below a
directory; relative to the tree, or absolute below the source or the backup)
that syncs overwrote or deleted and the trash still keeps, oldest first,
then the backup's current one. Restore any of them with ` + "`syncer restore PATH --at TIME`" + `.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, path, root, done, err := openVersions(cmd, configPath, flags, stderr, args[0])
			if err != nil {
				return err
			}
			defer done()
			vs, err := versions.List(root, cfg.TrashDir(), path)
			if err != nil {
				return err
			}
			if len(vs) == 0 && !asJSON {
				return fmt.Errorf("no version of %q on the backup", path)
			}
			return status.Write(stdout, asJSON, vs, status.PrintVersions)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file (e.g. /etc/syncer/syncer.yaml)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addFlags(cmd.Flags(), &flags, config.TreeSettings...)
	return cmd
}

func newRestoreCmd(stdout, stderr io.Writer) *cobra.Command {
	var configPath, at, to string
	var force, dryRun, asJSON bool
	flags := config.Default()
	cmd := &cobra.Command{
		Use:   "restore PATH [--at TIME] [--to DIR] [--dry-run] [--force]",
		Short: "Bring back a file, a directory or a project as it was at a time",
		Long: `restore brings PATH back from the backup and its kept versions: each file as
it was at --at (default: its latest content, a deleted file's last version),
files that did not exist then left out. Without --to it goes back to its
place in the source; with --to DIR it lands in DIR under PATH's last name.
It never replaces an existing file without --force, and checks every
target before it writes anything. --dry-run lists what it would restore.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			when, err := versions.ParseAt(at, time.Now())
			if err != nil {
				return usageError{err}
			}
			cfg, path, backup, done, err := openVersions(cmd, configPath, flags, stderr, args[0])
			if err != nil {
				return err
			}
			defer done()
			target, toPath, err := versions.Target(cfg.Source, to, path)
			if err != nil {
				return usageError{err}
			}
			dst, err := osx.OpenRoot(target)
			if err != nil {
				return fmt.Errorf("restore target: %w", err)
			}
			defer dst.Close()
			done2, err := versions.Restore(versions.RestoreOptions{Backup: backup, Trash: cfg.TrashDir(), Path: path, At: when,
				To: dst, ToPath: toPath, Force: force, DryRun: dryRun})
			if err != nil {
				return err
			}
			return status.Write(stdout, asJSON, done2, func(w io.Writer, r []versions.Restored) { status.PrintRestored(w, r, dst.Join, dryRun) })
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file (e.g. /etc/syncer/syncer.yaml)")
	cmd.Flags().StringVar(&at, "at", "", "the time to restore PATH as of (2026-12-02 14:30, RFC 3339, a stamp, or a duration ago: 90m)")
	cmd.Flags().StringVar(&to, "to", "", "restore into this directory instead of the source")
	cmd.Flags().BoolVar(&force, "force", false, "replace files that exist at the target")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be restored and write nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addFlags(cmd.Flags(), &flags, config.TreeSettings...)
	return cmd
}

// openVersions is the set-up of versions and restore: the config, arg as
// a path in the tree, and the backup opened for reading it and its
// versions; done undoes it all.
func openVersions(cmd *cobra.Command, configPath string, flags config.Config, stderr io.Writer, arg string) (
	cfg config.Config, path string, root *osx.Root, done func(), err error) {
	cfg, log, _, err := prepare(cmd, configPath, flags, stderr)
	if err != nil {
		return cfg, "", nil, nil, err
	}
	ctx, end := signals(cmd, log)
	if path, err = cfg.TreePath(arg); err != nil {
		end()
		return cfg, "", nil, nil, usageError{err}
	}
	if cfg.TrashDir() == "" {
		end()
		return cfg, "", nil, nil, errors.New("trash_retention is 0: no versions are kept")
	}
	r, err := rsync.New(cfg.Rsync(zap.NewNop()))
	var closeBackup func()
	if err == nil {
		root, closeBackup, err = r.Open(ctx, path)
	}
	if err != nil {
		end()
		return cfg, "", nil, nil, err
	}
	return cfg, path, root, func() { closeBackup(); end() }, nil
}

package config

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/coalesce"
	"github.com/syncer/syncer/copier"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/index"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/internal/xattr"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/watcher"
	"github.com/syncer/syncer/worker"
)

// What each component needs from the settings. The callbacks are the
// caller's: the config holds no state.

// TrashDir is the trash directory's name in the backup root, "" when trash
// is off (trash_retention 0).
func (c *Config) TrashDir() string {
	if c.TrashRetention <= 0 {
		return ""
	}
	return c.Trash
}

// IgnoreDest are the names in the backup root that are not part of the
// mirror.
func (c *Config) IgnoreDest() []string {
	if t := c.TrashDir(); t != "" {
		return []string{t}
	}
	return nil
}

// IndexFile is where the index of synced files lives.
func (c *Config) IndexFile() string { return filepath.Join(c.StateDir, "index.db") }

// IdentityFile is where the source root's identity is recorded.
func (c *Config) IdentityFile() string { return filepath.Join(c.StateDir, "source.json") }

// PausesFile is where the operator's pauses are kept (guard.Pauses).
func (c *Config) PausesFile() string { return filepath.Join(c.StateDir, "paused.json") }

// Queue is where the queue lives and how it behaves; scratch is a
// standalone reconcile's in-memory one.
func (c *Config) Queue(log *zap.Logger, scratch bool, onFailover func(string)) queue.Options {
	o := queue.Options{StateDir: c.StateDir, Listen: c.NatsListen, Scratch: scratch, Replicas: c.NatsReplicas,
		JobAckWait: c.JobAckWait, EventAckWait: 3*c.MaxDelay + time.Minute, OnFailover: onFailover, Logger: log}
	if len(c.NatsURL) > 0 {
		o.External, o.Listen = c.external(), ""
	}
	return o
}

// Rsync is the rsync runner for the backup.
func (c *Config) Rsync(log *zap.Logger) rsync.Options {
	return rsync.Options{Binary: c.RsyncPath, Source: c.Source, Dest: c.Dest,
		SSH:          rsync.SSH{Identity: c.SSHIdentity, Port: c.SSHPort, KnownHosts: c.SSHKnownHosts},
		PasswordFile: c.RsyncPasswordFile, Excludes: c.Excludes(), Args: c.RsyncArgs, MaxDelete: c.MaxDelete,
		Keep: c.Keep(), Sparse: c.Sparse, HardLinks: c.HardLinks,
		Trash: c.TrashDir(), Logger: log}
}

// TrashPolicy is what the trash keeps (trash_retention, trash_max_bytes,
// trash_min_free); freed, when set, counts the runs removed before their
// retention for the backup's room.
func (c *Config) TrashPolicy(freed func(runs int)) rsync.TrashPolicy {
	return rsync.TrashPolicy{Retention: c.TrashRetention, MaxBytes: int64(c.TrashMaxBytes), MinFree: c.TrashMinFree, Freed: freed}
}

// Copier is the direct copier's options, and whether it may be used: it
// is on (direct_copy), the backup is local, and neither hard links nor
// extra rsync options ask for what it does not do.
func (c *Config) Copier() (copier.Options, bool) {
	return copier.Options{Source: c.Source, Dest: c.Dest, Excludes: c.Excludes(), OpenWait: c.OpenFileWait, Trash: c.TrashDir(),
			Keep: c.Keep(), Sparse: c.Sparse, MaxDelete: c.MaxDelete},
		c.DirectCopy && len(c.RsyncArgs) == 0 && !c.Remote() && !c.HardLinks
}

// Keep is the kinds of extended attributes and ACLs the settings ask to keep.
func (c *Config) Keep() xattr.Kind {
	k := xattr.None
	if c.Xattrs {
		k |= xattr.User | xattr.Trusted | xattr.Security
	}
	if c.ACLs {
		k |= xattr.ACL
	}
	return k
}

// Backup is what a process knows of the backup from its start: the kinds
// of metadata asked for that its filesystem keeps (Takes) and those it
// cannot (Lost), and the index of synced files.
type Backup struct {
	Takes, Lost xattr.Kind
	Index       *index.Index // nil without one
}

// OpenBackup probes the backup (ProbeBackup) and says once what it cannot
// keep, and opens the index of synced files where one process both walks
// and syncs a local backup on the embedded queue (the index records what
// its own workers synced). A failed probe assumes everything is kept; a
// failed index leaves reconcile to sizes and mtimes. Both are logged.
func (c *Config) OpenBackup(log *zap.Logger) Backup {
	var b Backup
	var err error
	if b.Takes, err = c.ProbeBackup(); err != nil {
		log.Warn("could not probe what the backup keeps; assuming everything", zap.Error(err))
	}
	if b.Lost = c.Keep() &^ b.Takes; b.Lost != xattr.None {
		log.Warn("the backup's filesystem cannot keep some metadata: it is dropped and counted per project (syncer_metadata_dropped_total)",
			zap.String("cannot_keep", b.Lost.String()), zap.String("dest", c.Dest))
	}
	if !c.Remote() && len(c.NatsURL) == 0 {
		if b.Index, err = index.Open(c.IndexFile(), c.Dest, log.Named("index")); err != nil {
			log.Warn("no index of synced files: reconcile compares sizes and mtimes only", zap.Error(err))
		}
	}
	return b
}

// Close writes what the index has queued and closes it.
func (b Backup) Close() {
	if b.Index != nil {
		_ = b.Index.Close()
	}
}

// Recorder writes the index of synced files after each sync; b.Lost is
// counted on what it records.
func (c *Config) Recorder(b Backup, log *zap.Logger) *index.Recorder {
	return &index.Recorder{Index: b.Index, Source: c.Source, Dest: c.Dest, Excludes: c.Excludes(), Logger: log}
}

// ProbeBackup finds what a local backup's filesystem keeps of what Keep
// asks for (xattr.Probe on its root). A remote backup is not probed: it
// returns Keep, and rsync's errors say what the far side refuses.
func (c *Config) ProbeBackup() (xattr.Kind, error) {
	if c.Remote() || c.Keep() == xattr.None {
		return c.Keep(), nil
	}
	root, err := osx.OpenRoot(c.Dest)
	if err != nil {
		return c.Keep(), err
	}
	defer root.Close()
	takes, err := xattr.Probe(root.Fd())
	return c.Keep() & takes, err
}

// Guard is the deletion guard's options; listDest lists a remote
// backup's root (unused for a local one).
func (c *Config) Guard(log *zap.Logger, listDest func() ([]string, error), onResume func()) guard.Options {
	o := guard.Options{Source: c.Source, Dest: c.Dest, Marker: c.Marker, RequireMount: c.RequireMount,
		IgnoreDest: c.IgnoreDest(), IdentityFile: c.IdentityFile(), OnResume: onResume, Logger: log}
	if c.Remote() {
		o.ListDest = listDest
	}
	return o
}

// Brake is the deletion brake's options, and whether there is one: a
// fraction is set and the backup is local (the counts come from reading it).
func (c *Config) Brake(log *zap.Logger) (guard.BrakeOptions, bool) {
	walk := c.Walk()
	return guard.BrakeOptions{Fraction: c.MaxDeleteFraction, Logger: log, StateFile: filepath.Join(c.StateDir, "held.json"),
		Count: func(ctx context.Context, scopes []syncer.Scope, files map[string][]string) (map[string]int64, error) {
			return reconcile.Deletions(ctx, walk, scopes, files)
		},
		Entries: func(ctx context.Context, project string) (int64, error) { return reconcile.Entries(ctx, walk, project) },
	}, c.MaxDeleteFraction > 0 && !c.Remote()
}

// Watcher is the watcher's options; onLost asks for a reconcile.
func (c *Config) Watcher(log *zap.Logger, onLost func(syncer.Scope)) watcher.Options {
	wait := c.OpenFileWait
	if wait == 0 {
		wait = -1 // off
	}
	return watcher.Options{Root: c.Source, Excludes: c.Excludes(), OpenWait: wait, OnLost: onLost, Backend: c.WatchBackend, Logger: log}
}

// Coalesce is the coalescer's debounce and collapse settings.
func (c *Config) Coalesce() coalesce.Options {
	return coalesce.Options{Quiet: c.Debounce, MaxDelay: c.MaxDelay, MaxChildren: c.CollapseChildren, MaxPending: c.CollapseProject}
}

// Pool is the worker pool's sizing and retry settings; the caller adds
// its source, syncer and callbacks.
func (c *Config) Pool(log *zap.Logger) worker.Options {
	return worker.Options{Workers: c.Workers, Batch: c.Batch, ShutdownTimeout: c.ShutdownTimeout, MaxAttempts: c.RetryMax,
		Heartbeat: c.JobAckWait / 4, Backoff: syncer.Backoff{Base: c.RetryBackoff, Max: max(c.RetryBackoff, 10*time.Minute)},
		Logger: log}
}

// Walk is the reconcile walk over the trees: no Dest for a remote backup,
// whose comparison rsync does.
func (c *Config) Walk() reconcile.Options {
	o := reconcile.Options{Source: c.Source, Dest: c.Dest, Excludes: c.Excludes(), IgnoreDest: c.IgnoreDest(), Keep: c.Keep()}
	if c.Remote() {
		o.Dest = ""
	}
	return o
}

// TreePath turns a path given on the command line (relative to the tree,
// or absolute below the source or the backup) into one relative to the tree.
func (cfg *Config) TreePath(p string) (string, error) {
	if filepath.IsAbs(p) {
		for _, root := range []string{cfg.Source, cfg.Dest} {
			if rel, ok := syncer.Rel(root, filepath.Clean(p)); ok {
				p = rel
				break
			}
		}
		if filepath.IsAbs(p) {
			return "", fmt.Errorf("%s is neither below the source %s nor below the backup %s", p, cfg.Source, cfg.Dest)
		}
	}
	p = strings.TrimSuffix(strings.TrimPrefix(p, "./"), "/")
	if p == "." {
		p = ""
	}
	if err := syncer.CheckPath(p); err != nil {
		return "", err
	}
	return p, nil
}

// AcceptSource records the source root as it is now as the one to back up
// (guard.Guard.Accept) with no daemon running, holding the state dir so
// that none starts meanwhile.
func (c *Config) AcceptSource() (guard.Identity, error) {
	var id guard.Identity
	err := c.offline(func() (err error) {
		id, err = guard.New(c.Guard(zap.NewNop(), nil, nil)).Accept()
		return err
	})
	return id, err
}

// Pause records, with no daemon running, an operator's pause of project
// ("" every project) for the next start; resume ends it instead. It
// returns the pauses it ended and those in force then.
func (c *Config) Pause(project, reason string, resume bool) (ended, now []guard.Pause, err error) {
	if project != "" {
		if err := c.CheckProjects([]string{project}); err != nil {
			return nil, nil, err
		}
	}
	err = c.offline(func() error {
		ps, err := guard.OpenPauses(c.PausesFile(), nil)
		if err == nil && resume {
			ended, err = ps.Resume(project)
		} else if err == nil {
			_, err = ps.Pause(project, reason)
		}
		now = ps.List()
		return err
	})
	return ended, now, err
}

// NoDaemon returns an error when a daemon holds the state dir though
// asking it failed with why (a socket left behind is not one).
func (c *Config) NoDaemon(why error) error {
	if err := c.offline(func() error { return nil }); errors.Is(err, queue.ErrLocked) {
		return fmt.Errorf("a daemon holds %s but does not answer: %v", c.StateDir, why)
	}
	return nil
}

// offline runs fn holding the state dir, so that no daemon starts meanwhile.
func (c *Config) offline(fn func() error) error {
	lock, err := queue.LockDir(filepath.Join(c.StateDir, "nats"))
	if err != nil {
		return err
	}
	defer lock.Close()
	return fn()
}

package copier

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/openfile"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/internal/xattr"
)

// ErrExists means the destination directory exists already: rsync's job.
var ErrExists = errors.New("destination exists")

// Options configure a Copier.
type Options struct {
	Source, Dest string
	// Excludes are what is not copied; nil copies everything.
	Excludes *syncer.Excludes
	// Concurrency bounds parallel file copies; 4×GOMAXPROCS by default.
	Concurrency int
	// OpenWait, when positive, makes SyncFlat leave out new files that are
	// still open for writing, unless they were created longer ago.
	OpenWait time.Duration
	// Trash, when set, is a directory name in the backup root: a file
	// SyncFlat replaces moves to Trash/<YYYY-MM-DD>/<path> first, as with
	// rsync.Options.Trash. Now gives the date; time.Now when nil.
	Trash string
	// MaxDelete, when positive, is rsync's cap on deletions: SyncFlat
	// then leaves every deletion to rsync, which enforces it.
	MaxDelete int
	Now       func() time.Time
	// Keep is the kinds of extended attributes and ACLs copied: set from
	// the source, removed where the source has none. Values the backup
	// refuses (too large for it) are counted in Stats.Dropped.
	Keep xattr.Kind
	// Takes, when not zero, is what the backup's filesystem keeps
	// (xattr.Probe): attributes of kinds in Keep that it does not take
	// are not tried, and are counted in Stats.Dropped.
	Takes xattr.Kind
	// Sparse keeps the holes of sparse files (SEEK_DATA/SEEK_HOLE): only
	// their data is read and written.
	Sparse bool
}

// Copier copies missing subtrees. It is safe for concurrent use on
// disjoint scopes.
type Copier struct{ opts Options }

// New returns a Copier.
func New(opts Options) *Copier {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4 * runtime.GOMAXPROCS(0)
	}
	if opts.Takes == xattr.None {
		opts.Takes = opts.Keep
	}
	return &Copier{opts: opts}
}

// dirAttr is a directory whose attributes are applied once its content is in.
type dirAttr struct {
	rel string
	st  unix.Stat_t
	x   []xattr.Attr
}

type run struct {
	c     *Copier
	t     *trees
	g     *errgroup.Group
	ctx   context.Context
	skip  map[string]bool
	mu    sync.Mutex
	dirs  []dirAttr
	stats syncer.Stats
}

// Copy creates Dest/dir as a copy of Source/dir. It returns ErrExists when
// Dest/dir exists as a directory. Missing parents are created with their
// source attributes, as rsync --relative does. A backup entry on the way
// that is not a directory (a symlink planted there, a file the source
// replaced by a directory) is moved into the trash, never written through.
// Files that vanish while copying, or turn out not to be what the listing
// said, are skipped and reported with Stats.Vanished. Regular files in skip
// (paths relative to the source root, see syncer.Job.Open) are left out.
func (c *Copier) Copy(ctx context.Context, dir string, skip []string) (syncer.Stats, error) {
	if err := syncer.CheckPath(dir); err != nil {
		return syncer.Stats{}, err
	}
	t, err := c.open()
	if err != nil {
		return syncer.Stats{}, err
	}
	defer t.close()
	if dir == "" {
		return syncer.Stats{}, ErrExists
	}
	if bad, err := misplaced(t.dst, dir); err != nil {
		return syncer.Stats{}, err
	} else if bad != "" {
		if _, err := t.evict(bad); err != nil {
			return syncer.Stats{}, err
		}
	}
	var st unix.Stat_t
	pfd, name, err := t.dst.OpenParent(dir)
	if err == nil {
		err = unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(pfd)
		if err == nil {
			return syncer.Stats{}, ErrExists
		}
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return syncer.Stats{}, fmt.Errorf("lstat %s: %w", t.dst.Join(dir), err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	r := &run{c: c, t: t, g: g, ctx: gctx}
	if len(skip) > 0 {
		r.skip = make(map[string]bool, len(skip))
		for _, p := range skip {
			r.skip[p] = true
		}
	}
	// The scope itself gone from the source (created and removed at once)
	// is not a vanished file to look at again: its parent's job carries
	// the removal. Reporting it as vanished would bring this job back
	// forever.
	missing, base, err := r.missingParents(dir)
	if err != nil {
		return syncer.Stats{}, err
	}
	// The backup directory the first new one is made in may have had its
	// own sync already, and none follows: it keeps the times its source
	// has, as if nothing had been made in it.
	defer t.dst.KeepTimes(t.src, []string{base})()
	if err := r.parents(missing); err != nil {
		if errors.Is(err, errSourceGone) {
			return syncer.Stats{}, nil
		}
		return syncer.Stats{}, err
	}
	sfd, err := t.src.OpenDir(dir)
	if gone(err) {
		return syncer.Stats{}, nil
	}
	if err != nil {
		return syncer.Stats{}, err
	}
	if err := unix.Fstat(sfd, &st); err != nil {
		unix.Close(sfd)
		return syncer.Stats{}, fmt.Errorf("stat %s: %w", t.src.Join(dir), err)
	}
	r.g.Go(func() error { return r.dir(dir, sfd, st) })
	if err := g.Wait(); err != nil {
		return r.stats, err
	}
	// Deepest first: creating entries changes a directory's mtime, and a
	// read-only directory must get its mode after its content.
	sort.Slice(r.dirs, func(i, j int) bool {
		return strings.Count(r.dirs[i].rel, "/") > strings.Count(r.dirs[j].rel, "/")
	})
	for _, d := range r.dirs {
		if err := r.dirAttrs(d); err != nil {
			return r.stats, err
		}
	}
	return r.stats, nil
}

// errSourceGone says a source directory on the way to a scope is gone.
var errSourceGone = errors.New("source directory gone")

// gone reports whether err says a source path no longer exists as a
// directory.
func gone(err error) bool { return errors.Is(err, unix.ENOENT) || osx.NotDir(err) }

// dirAttrs gives a backup directory its source attributes, on its descriptor.
func (r *run) dirAttrs(d dirAttr) error {
	fd, err := r.t.dst.OpenDir(d.rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	dropped, err := r.c.setFdAttrs(fd, &d.st, d.x)
	r.drop(dropped)
	if err != nil {
		return fmt.Errorf("%s: %w", r.t.dst.Join(d.rel), err)
	}
	return nil
}

// missingParents returns the ancestors of dir missing in the backup,
// nearest first, and the nearest one present ("" is the root).
func (r *run) missingParents(dir string) (missing []string, base string, err error) {
	for p := syncer.Parent(dir); p != ""; p = syncer.Parent(p) {
		fd, err := r.t.dst.OpenDir(p)
		if err == nil {
			unix.Close(fd)
			return missing, p, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return nil, "", err
		}
		missing = append(missing, p)
	}
	return missing, "", nil
}

// parents creates the missing ancestors of a directory in the backup
// (missingParents), each with the attributes of its source directory
// (read on its descriptor).
func (r *run) parents(missing []string) error {
	for i := len(missing) - 1; i >= 0; i-- {
		var st unix.Stat_t
		sfd, err := r.t.src.OpenDir(missing[i])
		if gone(err) {
			return errSourceGone
		}
		if err != nil {
			return err
		}
		err = unix.Fstat(sfd, &st)
		var x []xattr.Attr
		if err == nil {
			x, err = r.c.attrsOf(xattr.Fd(sfd))
		}
		unix.Close(sfd)
		if err != nil {
			return fmt.Errorf("stat %s: %w", r.t.src.Join(missing[i]), err)
		}
		pfd, name, err := r.t.dst.OpenParent(missing[i])
		if err != nil {
			return err
		}
		err = unix.Mkdirat(pfd, name, 0o700)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mkdir %s: %w", r.t.dst.Join(missing[i]), err)
		}
		r.addDir(missing[i], st, x)
	}
	return nil
}

func (r *run) addDir(rel string, st unix.Stat_t, x []xattr.Attr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirs = append(r.dirs, dirAttr{rel, st, x})
}

func (r *run) drop(n int64) {
	if n == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Dropped += n
}

func (r *run) count(files, bytes int64, vanished bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Files += files
	r.stats.Bytes += bytes
	r.stats.Vanished = r.stats.Vanished || vanished
}

// spawn runs fn on a new goroutine when one is free, else inline: the
// goroutine count stays bounded and a full pool never deadlocks.
func (r *run) spawn(fn func() error) error {
	if r.g.TryGo(fn) {
		return nil
	}
	return fn()
}

// dir creates rel in the backup and copies the entries of the source
// directory open as sfd, which it closes. Subdirectories are opened from
// sfd without following symlinks, files are opened from it with
// O_NOFOLLOW and checked with fstat: an entry swapped for a symlink after
// the listing is never followed.
func (r *run) dir(rel string, sfd int, st unix.Stat_t) error {
	defer unix.Close(sfd)
	if err := r.ctx.Err(); err != nil {
		return err
	}
	pfd, name, err := r.t.dst.OpenParent(rel)
	if err != nil {
		return err
	}
	err = unix.Mkdirat(pfd, name, 0o700)
	if err != nil {
		unix.Close(pfd)
		return fmt.Errorf("mkdir %s: %w", r.t.dst.Join(rel), err)
	}
	dfd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	unix.Close(pfd)
	if err != nil {
		return fmt.Errorf("open %s: %w", r.t.dst.Join(rel), err)
	}
	defer unix.Close(dfd)
	x, err := r.c.attrsOf(xattr.Fd(sfd))
	if err != nil {
		return fmt.Errorf("%s: %w", r.t.src.Join(rel), err)
	}
	r.addDir(rel, st, x)
	type ent struct {
		name string
		st   unix.Stat_t
	}
	var ents []ent
	err = osx.ListFd(sfd, r.t.src.Join(rel), func(name string) bool { return r.c.opts.Excludes.MatchIn(rel, name) }, func(_ int, name string, st *unix.Stat_t) {
		ents = append(ents, ent{name, *st})
	})
	if err != nil {
		return err
	}
	for _, e := range ents {
		child := join(rel, e.name)
		var err error
		switch e.st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			cfd, oerr := unix.Openat(sfd, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if oerr != nil {
				if errors.Is(oerr, unix.ENOENT) || osx.NotDir(oerr) {
					r.count(0, 0, true)
					continue
				}
				return fmt.Errorf("open %s: %w", r.t.src.Join(child), oerr)
			}
			var cst unix.Stat_t
			if serr := unix.Fstat(cfd, &cst); serr != nil {
				unix.Close(cfd)
				return fmt.Errorf("stat %s: %w", r.t.src.Join(child), serr)
			}
			err = r.spawn(func() error { return r.dir(child, cfd, cst) })
		case unix.S_IFREG:
			if r.skip[child] {
				continue
			}
			in, ok, oerr := openSource(sfd, e.name)
			if oerr != nil {
				return fmt.Errorf("open %s: %w", r.t.src.Join(child), oerr)
			}
			if !ok {
				r.count(0, 0, true)
				continue
			}
			out, derr := dup(dfd)
			if derr != nil {
				unix.Close(in)
				return derr
			}
			name := e.name
			err = r.spawn(func() error {
				defer unix.Close(out)
				return r.file(in, out, name)
			})
		default:
			err = r.special(sfd, dfd, child, e.name, &e.st, e.name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openSource opens the regular file name of the source directory dirfd for
// reading: O_NOFOLLOW, O_NONBLOCK (a FIFO swapped in never blocks the
// open), and fstat decides. ok is false, with no error, when the entry is
// gone or is no longer a regular file.
func openSource(dirfd int, name string) (fd int, ok bool, err error) {
	fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENXIO) {
		return -1, false, nil
	}
	if err != nil {
		return -1, false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, false, err
	}
	return fd, true, nil
}

// file copies the source file open as in (which it closes) to the new
// entry name of the backup directory dfd.
func (r *run) file(in, dfd int, name string) error {
	defer unix.Close(in)
	if err := r.ctx.Err(); err != nil {
		return err
	}
	n, dropped, err := r.c.copyFile(in, dfd, name)
	r.drop(dropped)
	if err != nil {
		return err
	}
	r.count(1, n, false)
	return nil
}

// copyFile creates the entry name of the backup directory dfd (which must
// not exist) as a copy of the open source file in, with in's attributes as
// fstat gives them and its extended attributes and ACLs (Options.Keep).
// It returns the bytes copied and the attributes the backup refused. Raw
// descriptors: an os.File costs a netpoll registration and blocking mode
// changes per file, a fifth of the system calls of a cold copy.
func (c *Copier) copyFile(in, dfd int, name string) (n, dropped int64, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(in, &st); err != nil {
		return 0, 0, fmt.Errorf("stat: %w", err)
	}
	x, err := c.attrsOf(xattr.Fd(in))
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", name, err)
	}
	out, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("create %s: %w", name, err)
	}
	if c.opts.Sparse && st.Blocks*512 < st.Size {
		n, err = sparseCopy(out, in, st.Size)
	} else {
		n, err = kernelCopy(out, in, st.Size)
	}
	if err == nil {
		dropped, err = c.setFdAttrs(out, &st, x)
	}
	if cerr := unix.Close(out); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(dfd, name, 0)
		return 0, 0, fmt.Errorf("copy %s: %w", name, err)
	}
	return n, dropped, nil
}

// sparseCopy copies the data of in (of size bytes) to out and leaves its
// holes as holes: SEEK_DATA and SEEK_HOLE find the data, copy_file_range
// (or reads and writes) copies each run of it at its offset, and the
// file's length is set last. A 1 GiB file holding 1 MiB of data costs
// 1 MiB of reads, writes and blocks. It returns the data bytes copied.
func sparseCopy(out, in int, size int64) (int64, error) {
	var n int64
	for off := int64(0); off < size; {
		data, err := unix.Seek(in, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // holes to the end
		}
		if err != nil {
			if off == 0 && errors.Is(err, unix.EINVAL) { // no SEEK_DATA here
				return kernelCopy(out, in, size)
			}
			return n, err
		}
		end, err := unix.Seek(in, data, unix.SEEK_HOLE)
		if err != nil {
			return n, err
		}
		end = min(end, size)
		if err := copyRange(out, in, data, end-data); err != nil {
			return n, err
		}
		n += end - data
		off = end
	}
	return n, unix.Ftruncate(out, size)
}

// copyRange copies length bytes at off from in to the same offset of out.
func copyRange(out, in int, off, length int64) error {
	roff, woff := off, off
	for length > 0 {
		m, err := unix.CopyFileRange(in, &roff, out, &woff, int(min(length, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) ||
				errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
				return preadCopy(out, in, roff, length)
			}
			return err
		}
		if m == 0 {
			return nil // the file shrank: it differs and is synced again
		}
		length -= int64(m)
	}
	return nil
}

func preadCopy(out, in int, off, length int64) error {
	buf := make([]byte, min(length, 1<<20))
	for length > 0 {
		m, err := unix.Pread(in, buf[:min(int64(len(buf)), length)], off)
		if err != nil {
			return err
		}
		if m == 0 {
			return nil
		}
		for w := 0; w < m; {
			k, err := unix.Pwrite(out, buf[w:m], off+int64(w))
			if err != nil {
				return err
			}
			w += k
		}
		off += int64(m)
		length -= int64(m)
	}
	return nil
}

// kernelCopy copies in to out without moving the bytes through user space
// where it can: copy_file_range within one filesystem (a reflink, or a
// server-side copy on NFS), sendfile between two (Go's io.Copy would fall
// back to 32 KiB reads and writes there: a third of the speed, measured
// from ext4 to tmpfs), else reads and writes of 1 MiB. It stops at end of
// file, or once size bytes are copied: the attributes it is given are those
// of that size, and a file that grew meanwhile differs and is synced again.
func kernelCopy(out, in int, size int64) (int64, error) {
	const chunk = 1 << 30
	var n int64
	for _, step := range []func() (int, error){
		func() (int, error) { return unix.CopyFileRange(in, nil, out, nil, chunk, 0) },
		func() (int, error) { return unix.Sendfile(out, in, nil, chunk) },
	} {
		done, err := pump(&n, size, step)
		if done || err != nil {
			return n, err
		}
	}
	buf := make([]byte, 1<<20)
	for {
		m, err := unix.Read(in, buf)
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, nil
		}
		if _, err := writeFull(out, buf[:m]); err != nil {
			return n, err
		}
		n += int64(m)
	}
}

// pump calls step until end of file or size bytes, adding to n. done is
// false, with no error, when step is not supported here and nothing was
// copied yet: the next way may be tried.
func pump(n *int64, size int64, step func() (int, error)) (done bool, err error) {
	for *n < size || size == 0 {
		m, err := step()
		if err != nil {
			if *n == 0 && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) ||
				errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM)) {
				return false, nil
			}
			return true, err
		}
		if m == 0 {
			return true, nil
		}
		*n += int64(m)
	}
	return true, nil
}

func writeFull(fd int, b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		m, err := unix.Write(fd, b)
		if err != nil {
			return total, err
		}
		total += m
		b = b[m:]
	}
	return total, nil
}

// special recreates a symlink, device, fifo or socket: the entry name of
// the source directory sfd as the entry to of the backup directory dfd.
func (r *run) special(sfd, dfd int, rel, name string, st *unix.Stat_t, to string) error {
	var err error
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		buf := make([]byte, unix.PathMax)
		var n int
		n, err = unix.Readlinkat(sfd, name, buf)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) { // gone, or no longer a symlink
			r.count(0, 0, true)
			return nil
		}
		if err == nil {
			err = unix.Symlinkat(string(buf[:n]), dfd, to)
		}
	} else {
		err = unix.Mknodat(dfd, to, st.Mode, int(st.Rdev))
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", r.t.dst.Join(rel), err)
	}
	if err := setAttrsAt(dfd, to, st); err != nil {
		return err
	}
	// A symlink's or device's own attributes (user.* are not allowed there).
	x, err := r.c.attrsOf(xattr.At(sfd, name))
	if err == nil {
		var dropped int64
		dropped, err = r.c.applyAttrs(xattr.At(dfd, to), x)
		r.drop(dropped)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", r.t.dst.Join(rel), err)
	}
	return nil
}

// writing reports whether the entry name of the source directory dirfd
// is a file open for writing that was created less than OpenWait ago.
func (c *Copier) writing(dirfd int, name string) bool {
	if c.opts.OpenWait <= 0 {
		return false
	}
	if open, _ := openfile.WritingAt(dirfd, name); !open {
		return false
	}
	born, ok := openfile.BornAt(dirfd, name)
	return ok && time.Since(born) < c.opts.OpenWait
}

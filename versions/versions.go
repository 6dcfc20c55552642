package versions

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
)

// Kinds of versions.
const (
	Overwritten = "overwritten" // replaced by a newer content
	Deleted     = "deleted"     // removed from the source
	Current     = "current"     // what the mirror holds now
)

// stampLayout names a run's trash directory: UTC, sortable, to the
// nanosecond, without ':' (which Windows clients of a Samba share refuse).
const stampLayout = "2006-01-02T150405.000000000Z"

// dayLayout is the trash of earlier syncer releases, one directory a day.
const dayLayout = "2006-01-02"

// manifestSuffix names a run's manifest beside its directory.
const manifestSuffix = ManifestSuffix

// ManifestSuffix ends the name of a stamp's manifest in the trash.
const ManifestSuffix = ".versions"

// Stamp is the trash directory name for what a run starting at t displaces.
func Stamp(t time.Time) string { return t.UTC().Format(stampLayout) }

// ParseStamp reads a trash directory name: a run's stamp, or an earlier
// release's day (its versions dated at the end of that day, local time).
func ParseStamp(name string) (time.Time, bool) {
	if t, err := time.Parse(stampLayout, name); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation(dayLayout, name, time.Local); err == nil {
		return t.AddDate(0, 0, 1).Add(-time.Nanosecond), true
	}
	return time.Time{}, false
}

// Version is one kept version of a file, or the mirror's current one.
type Version struct {
	Path  string    `json:"path"` // relative to the tree root
	At    time.Time `json:"at"`   // when it was displaced (Current: zero)
	Kind  string    `json:"kind"`
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`
	Mode  uint32    `json:"mode"` // unix mode bits, type included
	// Stamp is the trash directory holding it, "" for the mirror's.
	Stamp string `json:"stamp,omitempty"`
}

// Record writes the manifest of what a run displaced into trash/stamp of
// the backup at root: one line per entry that is not a directory, deleted
// when the mirror no longer has its path, else overwritten. A run that
// displaced nothing (no stamp directory) records nothing. The manifest is
// what List reads; without one a stamp's directory is walked.
func Record(root *osx.Root, trash, stamp string) error { return RecordOnly(root, trash, stamp, nil) }

// RecordOnly is Record for a run that knows what it displaced: rels are
// those entries' paths below the stamp's directory, and only they (and
// what is below the directories among them) are read, not the whole
// stamp's tree. A nil rels is Record, and so is a stamp that already has
// a manifest (another run's, in the same nanosecond): it lists both.
func RecordOnly(root *osx.Root, trash, stamp string, rels []string) error {
	var had unix.Stat_t
	if rels != nil && root.Lstat(trash+"/"+stamp+manifestSuffix, &had) == nil {
		rels = nil
	}
	var lines bytes.Buffer
	n := 0
	add := func(rel string, st *unix.Stat_t) {
		kind := Deleted
		var cur unix.Stat_t
		if unix.Fstatat(root.Fd(), rel, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil {
			kind = Overwritten
		}
		fmt.Fprintf(&lines, "%c\t%d\t%d\t%d\t%s\n", kind[0], st.Size, st.Mtim.Nano(), st.Mode, strconv.Quote(rel))
		n++
	}
	base := trash + "/" + stamp
	var err error
	if rels == nil {
		err = walk(root, base, "", add)
	}
	for _, rel := range rels {
		var st unix.Stat_t
		if err = root.Lstat(base+"/"+rel, &st); err != nil {
			break
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			add(rel, &st)
		} else if err = walk(root, base, rel, add); err != nil {
			break
		}
	}
	if errors.Is(err, fs.ErrNotExist) || n == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	fd, name, err := root.OpenParent(trash + "/" + stamp + manifestSuffix)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tmp := name + ".tmp"
	f, err := unix.Openat(fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("versions manifest: %w", err)
	}
	_, werr := unix.Write(f, lines.Bytes())
	cerr := unix.Close(f)
	if werr != nil || cerr != nil {
		_ = unix.Unlinkat(fd, tmp, 0)
		return fmt.Errorf("versions manifest: %w", errors.Join(werr, cerr))
	}
	return unix.Renameat(fd, tmp, fd, name)
}

// walk calls fn for every entry below dir (relative to root) that is not a
// directory, with its path relative to dir's own root ("" + rel).
func walk(root *osx.Root, dir, rel string, fn func(rel string, st *unix.Stat_t)) error {
	var dirs []string
	err := root.ListDir(syncer.Join(dir, rel), func(string) bool { return false }, func(_ int, name string, st *unix.Stat_t) {
		p := syncer.Join(rel, name)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			dirs = append(dirs, p)
			return
		}
		fn(p, st)
	})
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := walk(root, dir, d, fn); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// stamps lists the trash's version directories, oldest first.
func stamps(root *osx.Root, trash string) ([]string, error) {
	var out []string
	err := root.ListDir(trash, func(string) bool { return false }, func(_ int, name string, st *unix.Stat_t) {
		if _, ok := ParseStamp(name); ok && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			out = append(out, name)
		}
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	sortByTime(out)
	return out, err
}

// sortByTime sorts stamps oldest first.
func sortByTime(names []string) {
	sort.Slice(names, func(i, j int) bool {
		a, _ := ParseStamp(names[i])
		b, _ := ParseStamp(names[j])
		return a.Before(b)
	})
}

// under reports whether p is path or below it ("" is everything).
func under(p, path string) bool {
	return path == "" || p == path || strings.HasPrefix(p, path+"/")
}

// List returns the kept versions of path (a file, or every file below a
// directory; "" is the whole tree) in the trash of the backup at root,
// oldest first, then the mirror's current ones.
func List(root *osx.Root, trash, path string) ([]Version, error) {
	names, err := stamps(root, trash)
	if err != nil {
		return nil, err
	}
	var out []Version
	for _, s := range names {
		at, _ := ParseStamp(s)
		vs, err := readManifest(root, trash, s, path)
		if errors.Is(err, fs.ErrNotExist) {
			vs, err = walkStamp(root, trash, s, path)
		}
		if err != nil {
			return nil, err
		}
		for i := range vs {
			vs[i].At, vs[i].Stamp = at, s
		}
		out = append(out, vs...)
	}
	cur, err := current(root, trash, path)
	if err != nil {
		return nil, err
	}
	return append(append([]Version{}, out...), cur...), nil // never nil: JSON lists it as []
}

// readManifest reads the versions below path from a stamp's manifest.
func readManifest(root *osx.Root, trash, stamp, path string) ([]Version, error) {
	fd, err := root.Open(trash+"/"+stamp+manifestSuffix, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), stamp+manifestSuffix)
	defer f.Close()
	var out []Version
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "\t", 5)
		if len(parts) != 5 {
			continue
		}
		p, err := strconv.Unquote(parts[4])
		if err != nil || !under(p, path) {
			continue
		}
		size, _ := strconv.ParseInt(parts[1], 10, 64)
		mt, _ := strconv.ParseInt(parts[2], 10, 64)
		mode, _ := strconv.ParseUint(parts[3], 10, 32)
		kind := Overwritten
		if parts[0] == "d" {
			kind = Deleted
		}
		out = append(out, Version{Path: p, Kind: kind, Size: size, Mtime: time.Unix(0, mt), Mode: uint32(mode)})
	}
	return out, sc.Err()
}

// walkStamp lists the versions below path in a stamp without a manifest
// (a remote run's, an earlier release's day).
func walkStamp(root *osx.Root, trash, stamp, path string) ([]Version, error) {
	var out []Version
	base := trash + "/" + stamp
	add := func(rel string, st *unix.Stat_t) {
		kind := Deleted
		var cur unix.Stat_t
		if unix.Fstatat(root.Fd(), rel, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil {
			kind = Overwritten
		}
		out = append(out, Version{Path: rel, Kind: kind, Size: st.Size, Mtime: time.Unix(0, st.Mtim.Nano()), Mode: st.Mode})
	}
	err := statOrWalk(root, base, path, add)
	if errors.Is(err, fs.ErrNotExist) || osx.NotDir(err) {
		return nil, nil
	}
	return out, err
}

// current lists the mirror's files below path.
func current(root *osx.Root, trash, path string) ([]Version, error) {
	var out []Version
	err := statOrWalk(root, "", path, func(rel string, st *unix.Stat_t) {
		if path == "" && under(rel, trash) {
			return
		}
		out = append(out, Version{Path: rel, Kind: Current, Size: st.Size, Mtime: time.Unix(0, st.Mtim.Nano()), Mode: st.Mode})
	})
	if errors.Is(err, fs.ErrNotExist) || osx.NotDir(err) {
		return nil, nil
	}
	return out, err
}

// statOrWalk calls fn for path below base when it is not a directory, else
// for every non-directory entry below it.
func statOrWalk(root *osx.Root, base, path string, fn func(rel string, st *unix.Stat_t)) error {
	if path != "" {
		fd, name, err := root.OpenParent(syncer.Join(base, path))
		if err != nil {
			return err
		}
		var st unix.Stat_t
		err = unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(fd)
		if err != nil {
			return &os.PathError{Op: "lstat", Path: root.Join(syncer.Join(base, path)), Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			fn(path, &st)
			return nil
		}
	}
	return walk(root, base, path, func(rel string, st *unix.Stat_t) { fn(rel, st) })
}

// Kept counts the version runs kept in the trash of the local backup at
// dest, and says when the oldest was made; 0 when there are none or the
// trash cannot be read.
func Kept(dest, trash string) (runs int, oldest time.Time) {
	root, err := osx.OpenRoot(dest)
	if err != nil {
		return 0, time.Time{}
	}
	defer root.Close()
	names, err := stamps(root, trash)
	if err != nil || len(names) == 0 {
		return 0, time.Time{}
	}
	oldest, _ = ParseStamp(names[0])
	return len(names), oldest
}

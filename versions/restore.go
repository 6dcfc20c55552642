package versions

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
)

// RestoreOptions say what to bring back, from where and to where.
type RestoreOptions struct {
	// Backup is the backup root, Trash its trash directory's name.
	Backup *osx.Root
	Trash  string
	// Path is the file or directory to restore ("" is the whole tree),
	// relative to the tree root.
	Path string
	// At is the time to restore it as of; zero is its latest content (for
	// a deleted file, its last version).
	At time.Time
	// To is the root written to, and ToPath where Path lands below it.
	To     *osx.Root
	ToPath string
	// Force replaces files that exist at the target; without it Restore
	// refuses before writing anything.
	Force bool
	// DryRun says what would be restored and writes nothing.
	DryRun bool
}

// Restored is one file brought back.
type Restored struct {
	Path string  `json:"path"` // where it went, relative to To
	From Version `json:"from"`
}

// Pick chooses, for each file of vs (List's answer), the version it had
// at time at (zero: its latest): the first one displaced after at, else
// the mirror's. A version written after at means the file did not exist
// then, and it is left out.
func Pick(vs []Version, at time.Time) []Version {
	byPath := map[string][]Version{}
	var paths []string
	for _, v := range vs {
		if _, ok := byPath[v.Path]; !ok {
			paths = append(paths, v.Path)
		}
		byPath[v.Path] = append(byPath[v.Path], v)
	}
	sort.Strings(paths)
	var out []Version
	for _, p := range paths {
		list := byPath[p] // kept versions oldest first, then the mirror's
		var pick *Version
		if at.IsZero() {
			pick = &list[len(list)-1]
		} else {
			for i := range list {
				if list[i].Kind == Current || list[i].At.After(at) {
					pick = &list[i]
					break
				}
			}
			if pick != nil && pick.Mtime.After(at) {
				pick = nil
			}
		}
		if pick != nil {
			out = append(out, *pick)
		}
	}
	return out
}

// Restore brings Path back as it was at At. It checks every target first:
// without Force, one that exists stops it before anything is written.
func Restore(o RestoreOptions) ([]Restored, error) {
	vs, err := List(o.Backup, o.Trash, o.Path)
	if err != nil {
		return nil, err
	}
	picked := Pick(vs, o.At)
	if len(picked) == 0 {
		return nil, fmt.Errorf("no version of %q at %s", o.Path, describe(o.At))
	}
	out := make([]Restored, 0, len(picked))
	var exist []string
	for _, v := range picked {
		to := syncer.Join(o.ToPath, strings.TrimPrefix(strings.TrimPrefix(v.Path, o.Path), "/"))
		if o.Path == v.Path {
			to = o.ToPath
		}
		out = append(out, Restored{Path: to, From: v})
		if fd, name, err := o.To.OpenParent(to); err == nil {
			var st unix.Stat_t
			if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				exist = append(exist, to)
			}
			unix.Close(fd)
		}
	}
	if len(exist) > 0 && !o.Force {
		return nil, fmt.Errorf("%d files exist at the target (first: %s): nothing restored; --force replaces them, --to restores elsewhere",
			len(exist), o.To.Join(exist[0]))
	}
	if o.DryRun {
		return out, nil
	}
	for _, r := range out {
		if err := restoreOne(o, r); err != nil {
			return nil, fmt.Errorf("restore %s: %w", o.To.Join(r.Path), err)
		}
	}
	return out, nil
}

func describe(at time.Time) string {
	if at.IsZero() {
		return "its latest"
	}
	return at.Format(time.RFC3339)
}

// restoreOne copies one version to its target: content, mode, owner,
// mtime, through descriptors only, renamed into place.
func restoreOne(o RestoreOptions, r Restored) error {
	from := r.From.Path
	if r.From.Stamp != "" {
		from = o.Trash + "/" + r.From.Stamp + "/" + from
	}
	if err := mkdirAll(o.To, syncer.Parent(r.Path)); err != nil {
		return err
	}
	pfd, name, err := o.To.OpenParent(r.Path)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	tmp := fmt.Sprintf(".%s.syncer-restore-%d", name, os.Getpid())
	if len(tmp) > syncer.MaxNameLen {
		tmp = fmt.Sprintf(".syncer-restore-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	var st unix.Stat_t
	switch r.From.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		spfd, sname, err := o.Backup.OpenParent(from)
		if err != nil {
			return err
		}
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(spfd, sname, buf)
		if err == nil {
			err = unix.Fstatat(spfd, sname, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		unix.Close(spfd)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(buf[:n]), pfd, tmp); err != nil {
			return err
		}
	case unix.S_IFREG:
		sfd, err := o.Backup.Open(from, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		src := os.NewFile(uintptr(sfd), from)
		defer src.Close()
		if err := unix.Fstat(sfd, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("%s is no longer a regular file", o.Backup.Join(from))
		}
		dfd, err := unix.Openat(pfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		dst := os.NewFile(uintptr(dfd), tmp)
		_, err = io.Copy(dst, src)
		if err == nil {
			err = unix.Fchown(dfd, int(st.Uid), int(st.Gid))
		}
		if err == nil {
			err = unix.Fchmod(dfd, st.Mode&0o7777)
		}
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = unix.Unlinkat(pfd, tmp, 0)
			return err
		}
	default:
		return fmt.Errorf("%s: a special file, not restored", o.Backup.Join(from))
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		_ = unix.Fchownat(pfd, tmp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	if err := unix.UtimesNanoAt(pfd, tmp, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		_ = unix.Unlinkat(pfd, tmp, 0)
		return err
	}
	flags := uint(unix.RENAME_NOREPLACE)
	if o.Force {
		flags = 0
	}
	if err := unix.Renameat2(pfd, tmp, pfd, name, flags); err != nil {
		_ = unix.Unlinkat(pfd, tmp, 0)
		return err
	}
	return nil
}

// mkdirAll makes the directory rel beneath r and its missing parents
// (0755), never through a symlink.
func mkdirAll(r *osx.Root, rel string) error {
	if rel == "" {
		return nil
	}
	fd, err := r.OpenDir(rel)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := mkdirAll(r, syncer.Parent(rel)); err != nil {
		return err
	}
	pfd, name, err := r.OpenParent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// ParseAt reads a restore time: RFC 3339, local "2006-01-02 15:04[:05]", a trash
// stamp, or a duration ago ("90m").
func ParseAt(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	if t, ok := ParseStamp(s); ok {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--at %q: want a time (2026-12-02 14:30, RFC 3339, a stamp from `syncer versions`) or a duration ago (90m)", s)
}

// Target is where restore writes path: back to its place below source, or,
// with to (--to DIR), into DIR under path's last name (the tree's root
// into DIR itself).
func Target(source, to, path string) (root, at string, err error) {
	if to == "" {
		return source, path, nil
	}
	if root, err = filepath.Abs(to); err != nil {
		return "", "", err
	}
	if path == "" {
		return root, "", nil
	}
	return root, filepath.Base(path), nil
}

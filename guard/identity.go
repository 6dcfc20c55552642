package guard

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Identity is what the source root is: which directory of which
// filesystem. A volume that failed to mount, was swapped or lazily
// unmounted leaves the same path on another filesystem or another
// directory, and its identity differs.
type Identity struct {
	// Path is the source root's path in the config when recorded.
	Path string `json:"path"`
	// FSID is the filesystem's id (statfs f_fsid), which ext4, xfs and
	// btrfs derive from the filesystem's UUID: it survives a remount on
	// another device number. Empty when the filesystem has none.
	FSID string `json:"fsid,omitempty"`
	// Device is the root's device number, major:minor.
	Device string `json:"device"`
	// Inode is the root directory's inode number.
	Inode uint64 `json:"inode"`
	// FSType is the filesystem's type (statfs f_type) and FSName its name.
	FSType int64  `json:"fstype"`
	FSName string `json:"fsname,omitempty"`
	// Mount is the mount point the root is on and MountSource what is
	// mounted there (/dev/sdb1, nas:/export); IsMount says the root is
	// itself that mount point.
	Mount       string    `json:"mount"`
	MountSource string    `json:"mount_source,omitempty"`
	IsMount     bool      `json:"is_mount"`
	Recorded    time.Time `json:"recorded,omitzero"`
}

// Same reports whether i and o are the same directory of the same
// filesystem: by filesystem id when both have one, else by device.
func (i Identity) Same(o Identity) bool {
	if i.Inode != o.Inode || i.FSType != o.FSType || i.IsMount != o.IsMount {
		return false
	}
	if i.FSID != "" && o.FSID != "" {
		return i.FSID == o.FSID
	}
	return i.Device == o.Device
}

func (i Identity) String() string {
	s := fmt.Sprintf("%s inode %d on %s", i.FSName, i.Inode, i.Device)
	if i.MountSource != "" {
		s += " (" + i.MountSource + " at " + i.Mount + ")"
	}
	if i.FSID != "" {
		s += " fsid " + i.FSID
	}
	return s
}

// Identify says what the directory at path is now.
func Identify(path string) (Identity, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Identity{}, err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return Identity{}, err
	}
	id := Identity{Path: path, Device: fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)), Inode: st.Ino, FSType: int64(fs.Type)}
	if fs.Fsid.Val != [2]int32{} {
		id.FSID = fmt.Sprintf("%08x%08x", uint32(fs.Fsid.Val[0]), uint32(fs.Fsid.Val[1]))
	}
	if m, ok := mountOf(path, id.Device); ok {
		id.Mount, id.MountSource, id.FSName, id.IsMount = m.point, m.source, m.fstype, m.point == path
	}
	return id, nil
}

type mount struct{ point, source, fstype string }

// mountOf finds the mount holding path: the longest mount point that is
// path or an ancestor of it, on device dev.
func mountOf(path, dev string) (mount, bool) {
	ents, err := mounts.entries()
	if err != nil {
		return mount{}, false
	}
	var best mount
	found := false
	for _, e := range ents {
		p := e.point
		if e.dev != dev || p != path && p != "/" && !strings.HasPrefix(path, p+"/") {
			continue
		}
		if !found || len(p) >= len(best.point) {
			best, found = e.mount, true
		}
	}
	return best, found
}

// mounts is this process's mount table, read again only once the kernel
// says it changed. The guard asks before every batch of jobs, and reading
// and parsing /proc/self/mountinfo each time cost a reconcile some 3 % of
// its CPU.
var mounts mountTable

// mountTable keeps /proc/self/mountinfo open: a mount or unmount since the
// last read makes poll report POLLPRI on it (proc(5)), and the table is
// read anew.
type mountTable struct {
	mu   sync.Mutex
	fd   int // open while read is set
	ents []mountEntry
	read bool
}

type mountEntry struct {
	dev string // major:minor
	mount
}

func (t *mountTable) entries() ([]mountEntry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.read {
		fds := []unix.PollFd{{Fd: int32(t.fd), Events: unix.POLLPRI}}
		if n, err := unix.Poll(fds, 0); err == nil && n == 0 {
			return t.ents, nil
		}
		unix.Close(t.fd)
		t.read = false
	}
	// Opened before it is read: a change from here on shows in the next poll.
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/proc/self/mountinfo", Err: err}
	}
	var b []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "read", Path: "/proc/self/mountinfo", Err: err}
		}
		if n == 0 {
			break
		}
		b = append(b, buf[:n]...)
	}
	t.ents = parseMountinfo(b)
	t.fd, t.read = fd, true
	return t.ents, nil
}

// parseMountinfo reads the lines of /proc/self/mountinfo:
// id parent major:minor root point options [optional...] - fstype source superoptions
func parseMountinfo(b []byte) []mountEntry {
	var out []mountEntry
	for line := range strings.SplitSeq(string(b), "\n") {
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		out = append(out, mountEntry{dev: fields[2], mount: mount{point: unescape(fields[4]), fstype: fields[sep+1], source: unescape(fields[sep+2])}})
	}
	return out
}

// loadIdentity reads the recorded identity; ok is false when none is.
func loadIdentity(file string) (Identity, bool, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, err
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, false, fmt.Errorf("%s: %w (remove it, or run `syncer resume --accept-source`, to record the source again)", file, err)
	}
	return id, true, nil
}

// saveJSON writes v to file as JSON, whole or not at all (a temporary
// file renamed into place), making file's directory when missing: the
// guard's state files (the identity, the pauses, the held deletions).
func saveJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

package guard

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mount{}, false
	}
	defer f.Close()
	var best mount
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) || fields[2] != dev {
			continue
		}
		p := unescape(fields[4])
		if p != path && p != "/" && !strings.HasPrefix(path, p+"/") {
			continue
		}
		if !found || len(p) >= len(best.point) {
			best, found = mount{point: p, fstype: fields[sep+1], source: unescape(fields[sep+2])}, true
		}
	}
	return best, found
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

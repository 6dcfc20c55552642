package watcher

import "golang.org/x/sys/unix"

// Filesystem magic numbers (statfs f_type) on which inotify misses other
// clients' writes.
var networkFS = map[int64]string{0x6969: "nfs", 0xff534d42: "cifs", 0xfe534d42: "smb2", 0x517b: "smb", 0x65735546: "fuse",
	0x564c: "ncp", 0x5346414f: "afs", 0x47504653: "gpfs", 0x0bd00bd0: "lustre", 0x00c36400: "ceph", 0x19830326: "fhgfs"}

// NetworkFS names the filesystem of path when it is a network (or FUSE)
// one, on which inotify sees only the writes this host makes: writes by
// other clients are found by a reconcile only. "" for a local filesystem,
// or when path cannot be read.
func NetworkFS(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return ""
	}
	return networkFS[int64(st.Type)]
}

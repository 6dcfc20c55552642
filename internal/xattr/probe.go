package xattr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer/internal/osx"
)

// Probe finds the kinds of attributes the filesystem of the open directory
// dirfd keeps, by setting one of each on a temporary file in it (removed
// again, and the directory's times put back). Kinds it refuses are left
// out; an error means the probe itself could not run (a read-only or full
// filesystem).
func Probe(dirfd int) (Kind, error) {
	var dir unix.Stat_t
	if err := unix.Fstat(dirfd, &dir); err != nil {
		return None, fmt.Errorf("probe attributes: %w", err)
	}
	name := fmt.Sprintf(".syncer-probe-%x", rand.Uint64())
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return None, fmt.Errorf("probe attributes: %w", err)
	}
	defer func() {
		unix.Close(fd)
		_ = unix.Unlinkat(dirfd, name, 0)
		_ = osx.Futimens(dirfd, &dir)
	}()
	var got Kind
	for _, p := range []struct {
		k     Kind
		name  string
		value []byte
	}{
		{User, "user.syncer.probe", []byte{1}},
		{Trusted, "trusted.syncer.probe", []byte{1}},
		{Security, "security.syncer.probe", []byte{1}},
		{ACL, "system.posix_acl_access", minimalACL()},
	} {
		err := unix.Fsetxattr(fd, p.name, p.value, 0)
		switch {
		case err == nil:
			got |= p.k
		case refused(err) || errors.Is(err, unix.EINVAL):
		default:
			return got, fmt.Errorf("probe %s: %w", p.k, err)
		}
	}
	return got, nil
}

// minimalACL is the ACL that only restates mode 0600 (user::rw-,
// group::---, other::---) in the kernel's xattr format: version 2, then
// (tag, perm, id) entries.
func minimalACL() []byte {
	const (
		userObj  = 0x01
		groupObj = 0x04
		other    = 0x20
		undef    = 0xffffffff
	)
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range [][2]uint16{{userObj, 6}, {groupObj, 0}, {other, 0}} {
		b = binary.LittleEndian.AppendUint16(b, e[0])
		b = binary.LittleEndian.AppendUint16(b, e[1])
		b = binary.LittleEndian.AppendUint32(b, undef)
	}
	return b
}

// Package xattr reads, compares and writes the extended attributes a backup
// keeps beside file contents: user.* (Samba's alternate data streams, DOS
// attributes, Finder info), trusted.* and security.* (Windows ACLs kept by
// vfs_acl_xattr, capabilities, SELinux labels) and POSIX ACLs, which Linux
// keeps as the attributes system.posix_acl_access and
// system.posix_acl_default. ACLs are copied as those raw values: numeric
// ids, as rsync --numeric-ids -A keeps them.
//
// Attributes are reached on an open descriptor (Fd) or as an entry of an
// open directory, never following it (At): no path is resolved beyond one
// name in a directory syncer holds open.
package xattr

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kind is a class of attributes a filesystem may or may not take; kinds
// combine as a set.
type Kind uint8

// The kinds of attributes a backup keeps.
const (
	User     Kind = 1 << iota // user.*
	Trusted                   // trusted.* (root only)
	Security                  // security.*
	ACL                       // system.posix_acl_access, system.posix_acl_default
	All           = User | Trusted | Security | ACL
	None     Kind = 0
)

var kindNames = []struct {
	k    Kind
	name string
}{{User, "user xattrs"}, {Trusted, "trusted xattrs"}, {Security, "security xattrs"}, {ACL, "POSIX ACLs"}}

// String names the kinds in k, "none" for none.
func (k Kind) String() string {
	var out []string
	for _, n := range kindNames {
		if k&n.k != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// Each calls fn with each single kind in k.
func (k Kind) Each(fn func(Kind)) {
	for _, n := range kindNames {
		if k&n.k != 0 {
			fn(n.k)
		}
	}
}

// KindOf is the kind of the attribute name; None for attributes a backup
// does not copy (other system.* names, which the kernel computes).
func KindOf(name string) Kind {
	switch {
	case strings.HasPrefix(name, "user."):
		return User
	case name == "trusted.SGI_ACL_FILE" || name == "trusted.SGI_ACL_DEFAULT":
		return None // XFS shows its ACLs under these too: they go as system.posix_acl_*
	case strings.HasPrefix(name, "trusted."):
		return Trusted
	case strings.HasPrefix(name, "security."):
		return Security
	case name == "system.posix_acl_access" || name == "system.posix_acl_default":
		return ACL
	}
	return None
}

// Attr is one attribute.
type Attr struct {
	Name  string
	Value []byte
}

// Entry is what attributes are read from and written to.
type Entry struct {
	fd   int    // an open file or directory, or -1
	path string // else an entry of an open directory, through /proc/self/fd
}

// Fd is the open file or directory fd (not an O_PATH descriptor).
func Fd(fd int) Entry { return Entry{fd: fd} }

// At is the entry name of the open directory dirfd, not followed: a
// symlink's own attributes. The kernel resolves /proc/self/fd/N to the
// directory itself, then looks name up in it without following it.
func At(dirfd int, name string) Entry {
	return Entry{fd: -1, path: "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name}
}

func (e Entry) list(buf []byte) (int, error) {
	if e.fd >= 0 {
		return unix.Flistxattr(e.fd, buf)
	}
	return unix.Llistxattr(e.path, buf)
}

func (e Entry) get(name string, buf []byte) (int, error) {
	if e.fd >= 0 {
		return unix.Fgetxattr(e.fd, name, buf)
	}
	return unix.Lgetxattr(e.path, name, buf)
}

func (e Entry) set(name string, v []byte) error {
	if e.fd >= 0 {
		return unix.Fsetxattr(e.fd, name, v, 0)
	}
	return unix.Lsetxattr(e.path, name, v, 0)
}

func (e Entry) remove(name string) error {
	if e.fd >= 0 {
		return unix.Fremovexattr(e.fd, name)
	}
	return unix.Lremovexattr(e.path, name)
}

// unsupported says the filesystem (or the entry's type) takes no attributes.
func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP)
}

// Names lists the entry's attribute names of the kinds in k, sorted. A
// filesystem without attributes has none.
func (e Entry) Names(k Kind) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := e.list(buf)
		if errors.Is(err, unix.ERANGE) {
			m, err := e.list(nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, max(m, 2*len(buf)))
			continue
		}
		if unsupported(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for raw := range bytes.SplitSeq(buf[:n], []byte{0}) {
			if name := string(raw); name != "" && KindOf(name)&k != 0 {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		return names, nil
	}
}

// List reads the entry's attributes of the kinds in k, sorted by name.
// Attributes removed meanwhile are left out.
func (e Entry) List(k Kind) ([]Attr, error) {
	names, err := e.Names(k)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := make([]Attr, 0, len(names))
	buf := make([]byte, 4<<10)
	for _, name := range names {
		v, err := e.value(name, &buf)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s: %w", name, err)
		}
		out = append(out, Attr{Name: name, Value: v})
	}
	return out, nil
}

func (e Entry) value(name string, buf *[]byte) ([]byte, error) {
	for {
		n, err := e.get(name, *buf)
		if errors.Is(err, unix.ERANGE) {
			m, err := e.get(name, nil)
			if err != nil {
				return nil, err
			}
			*buf = make([]byte, max(m, 2*len(*buf)))
			continue
		}
		if err != nil {
			return nil, err
		}
		return slices.Clone((*buf)[:n]), nil
	}
}

// Dropped counts attributes a backup could not keep, by kind.
type Dropped map[Kind]int64

// Add adds o to d (which must not be nil when o has counts).
func (d Dropped) Add(o Dropped) {
	for k, n := range o {
		d[k] += n
	}
}

// Total is the count of every kind.
func (d Dropped) Total() int64 {
	var n int64
	for _, v := range d {
		n += v
	}
	return n
}

// refused says the filesystem would not take this attribute (or any):
// no support, a value larger than it keeps (ext4 keeps a few KiB per
// inode), or a kind root may not set here.
func refused(err error) bool {
	return unsupported(err) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.E2BIG) ||
		errors.Is(err, unix.ERANGE) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// Apply makes the entry's attributes of the kinds in k equal to want
// (sorted by name, as List returns them): those missing or different are
// set, those of the kinds in k that want lacks are removed. Attributes the
// filesystem refuses are counted in the Dropped it returns, not failed.
// changed says whether anything was written.
func (e Entry) Apply(want []Attr, k Kind) (changed bool, dropped Dropped, err error) {
	have, err := e.List(k)
	if err != nil {
		return false, nil, err
	}
	drop := func(name string) {
		if dropped == nil {
			dropped = Dropped{}
		}
		dropped[KindOf(name)]++
	}
	for _, a := range want {
		if KindOf(a.Name)&k == 0 {
			continue
		}
		i, found := slices.BinarySearchFunc(have, a.Name, func(h Attr, n string) int { return strings.Compare(h.Name, n) })
		if found && bytes.Equal(have[i].Value, a.Value) {
			continue
		}
		if err := e.set(a.Name, a.Value); err != nil {
			if refused(err) {
				drop(a.Name)
				continue
			}
			return changed, dropped, fmt.Errorf("set xattr %s: %w", a.Name, err)
		}
		changed = true
	}
	for _, h := range have {
		if _, found := slices.BinarySearchFunc(want, h.Name, func(a Attr, n string) int { return strings.Compare(a.Name, n) }); found {
			continue
		}
		if err := e.remove(h.Name); err != nil && !errors.Is(err, unix.ENODATA) {
			return changed, dropped, fmt.Errorf("remove xattr %s: %w", h.Name, err)
		}
		changed = true
	}
	return changed, dropped, nil
}

// Sum is a hash of an attribute list as List returns it (sorted): equal
// lists have equal sums; no attributes sum to 0.
func Sum(attrs []Attr) uint64 {
	if len(attrs) == 0 {
		return 0
	}
	h := fnv.New64a()
	var n [8]byte
	for _, a := range attrs {
		h.Write([]byte(a.Name))
		h.Write([]byte{0})
		for i, v := 0, uint64(len(a.Value)); i < 8; i, v = i+1, v>>8 {
			n[i] = byte(v)
		}
		h.Write(n[:])
		h.Write(a.Value)
	}
	if s := h.Sum64(); s != 0 {
		return s
	}
	return 1
}

// Equal reports whether two attribute lists (sorted) are the same.
func Equal(a, b []Attr) bool {
	return slices.EqualFunc(a, b, func(x, y Attr) bool { return x.Name == y.Name && bytes.Equal(x.Value, y.Value) })
}

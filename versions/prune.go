package versions

import (
	"errors"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer/internal/osx"
)

// Old lists the stamps of the trash to remove, oldest first: those
// displaced before cutoff, then, when maxBytes is positive, the oldest
// others until the versions left hold at most maxBytes. names are the
// trash's entries (what is not a stamp is left alone); size gives a
// stamp's bytes, and is asked only when maxBytes is set.
func Old(names []string, cutoff time.Time, maxBytes int64, size func(stamp string) (int64, error)) ([]string, error) {
	var keep, old []string
	for _, n := range Stamps(names) {
		if at, _ := ParseStamp(n); at.Before(cutoff) {
			old = append(old, n)
		} else {
			keep = append(keep, n)
		}
	}
	if maxBytes <= 0 || len(keep) == 0 {
		return old, nil
	}
	sizes := make([]int64, len(keep))
	var total int64
	for i, s := range keep {
		n, err := size(s)
		if err != nil {
			return nil, err
		}
		sizes[i], total = n, total+n
	}
	for i := 0; i < len(keep) && total > maxBytes; i++ {
		old, total = append(old, keep[i]), total-sizes[i]
	}
	return old, nil
}

// Stamps keeps the names of a trash listing that are stamps, oldest first.
func Stamps(names []string) []string {
	var out []string
	for _, n := range names {
		if _, ok := ParseStamp(n); ok {
			out = append(out, n)
		}
	}
	sortByTime(out)
	return out
}

// Size is the bytes of the versions in a stamp of the backup at root: from
// its manifest, else by walking it.
func Size(root *osx.Root, trash, stamp string) (int64, error) {
	vs, err := readManifest(root, trash, stamp, "")
	if errors.Is(err, fs.ErrNotExist) {
		var n int64
		err = walk(root, trash+"/"+stamp, "", func(_ string, st *unix.Stat_t) { n += st.Size })
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return n, err
	}
	var n int64
	for _, v := range vs {
		n += v.Size
	}
	return n, err
}

// Usage is what freeing a stamp gives back to the backup's filesystem:
// its entries (the stamp directory, everything below it and its manifest:
// inodes) and their blocks, in bytes. A file that has other names too (a
// hard link) gives back neither. A stamp that is a symlink is one entry.
func Usage(root *osx.Root, trash, stamp string) (inodes, bytes int64, err error) {
	add := func(st *unix.Stat_t) {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			return
		}
		inodes++
		bytes += st.Blocks * 512
	}
	for _, name := range []string{stamp, Manifest(stamp)} {
		var st unix.Stat_t
		if err := root.Lstat(trash+"/"+name, &st); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return 0, 0, err
		}
		add(&st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := usageBelow(root, trash+"/"+name, add); err != nil {
				return 0, 0, err
			}
		}
	}
	return inodes, bytes, nil
}

// usageBelow hands add every entry below dir.
func usageBelow(root *osx.Root, dir string, add func(*unix.Stat_t)) error {
	var dirs []string
	err := root.ListDir(dir, func(string) bool { return false }, func(_ int, name string, st *unix.Stat_t) {
		add(st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			dirs = append(dirs, dir+"/"+name)
		}
	})
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := usageBelow(root, d, add); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Manifest is the name of a stamp's manifest in the trash, removed with it.
func Manifest(stamp string) string { return stamp + manifestSuffix }

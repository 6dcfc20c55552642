package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
)

// Parking: what Close does with the records still queued, and Open with
// what an earlier Close parked.
//
// A commit first waits until the backup's filesystem has written back
// everything copied before it (durable): at the end of a short reconcile
// that wait, and the commit's own two fsyncs, are a third of its time,
// spent only so that the records are never on disk before the data. So
// Close does not commit: it parks the queued records beside the index
// file (path + ".parked"), without waiting for any disk, with what says
// when they were written: this boot of the machine, the backup's mount
// (its unique mount ID, device and root inode) and the index's last
// commit. The next Open with the same backup takes them back into its
// queue when all of that still holds, and commits them at once, in the
// background, after flushing the backup's filesystem as before every
// commit: that flush is what puts the parked run's data on disk, or
// reports that it failed (a writeback error no one has seen is reported
// to a new opener). When anything moved (the machine restarted, the
// backup was unmounted, replaced or shut down, another process committed
// meanwhile, the file is torn), the parked records are dropped: what
// they recorded was maybe lost, and the next walk compares it again, as
// after any lost record (see the package doc).
//
// Where the kernel has no unique mount ID (before Linux 6.8), or the
// index has no backup to flush, Close commits as before.

const parkMagic = "syncer index parked 1\n"

// parkPath is where Close parks the records of the index file at path.
func parkPath(path string) string { return path + ".parked" }

// stamp is what must not have moved between a park and its taking back.
type stamp struct {
	Boot           string // /proc/sys/kernel/random/boot_id
	Mount          uint64 // the backup root's unique mount ID
	Dev, Root      uint64 // its device and inode
	IndexIno, TxID uint64 // the index file's inode and last commit
}

// stampNow is the stamp of the index now, false when it cannot be told
// (no backup to flush, no unique mount ID).
func (ix *Index) stampNow() (stamp, bool) {
	if ix.flush < 0 {
		return stamp{}, false
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return stamp{}, false
	}
	var sx unix.Statx_t
	if unix.Statx(ix.flush, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID_UNIQUE|unix.STATX_INO, &sx) != nil ||
		sx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return stamp{}, false
	}
	var st unix.Stat_t
	if unix.Stat(ix.path, &st) != nil {
		return stamp{}, false
	}
	s := stamp{Boot: strings.TrimSpace(string(boot)), Mount: sx.Mnt_id, Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor),
		Root: sx.Ino, IndexIno: st.Ino}
	if ix.db.View(func(tx *bolt.Tx) error { s.TxID = uint64(tx.ID()); return nil }) != nil {
		return stamp{}, false
	}
	return s, true
}

// park writes the queued records to the park file, and reports whether
// it did; when it cannot (see stampNow, or the write fails), they are
// left queued for a commit.
func (ix *Index) park() bool {
	ix.mu.Lock()
	batch := ix.pending
	ix.mu.Unlock()
	if len(batch) == 0 {
		return true
	}
	s, ok := ix.stampNow()
	if !ok {
		return false
	}
	// Written whole under another name, then renamed over: a reader sees
	// the old park or the new one, and the checksum finds a file torn by
	// a crash (whose boot then differs anyway).
	tmp := parkPath(ix.path) + ".tmp"
	err := os.WriteFile(tmp, encodePark(s, batch), 0o600)
	if err == nil {
		err = os.Rename(tmp, parkPath(ix.path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		ix.log.Warn("index of synced files: records not parked; committing them instead", zap.Error(err))
		return false
	}
	ix.mu.Lock()
	ix.pending = map[string]Update{}
	ix.mu.Unlock()
	return true
}

// unpark takes back what a Close parked, once: the file
// is removed whether its records are taken or dropped. It reports
// whether records were taken.
func (ix *Index) unpark() bool {
	p := parkPath(ix.path)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) || ix.flush < 0 {
		return false // no park, or no backup to flush before taking one
	}
	_ = os.Remove(p)
	if err != nil {
		ix.log.Warn("index of synced files: the records parked by the last run are unreadable; reconcile compares what they recorded again", zap.Error(err))
		return false
	}
	was, updates, err := decodePark(b)
	if err == nil {
		now, ok := ix.stampNow()
		switch {
		case !ok:
			err = errors.New("this kernel does not say which mount the backup is")
		case now.Boot != was.Boot:
			err = errors.New("the machine restarted since")
		case now.Mount != was.Mount || now.Dev != was.Dev || now.Root != was.Root:
			err = errors.New("the backup was unmounted or replaced since")
		case now.IndexIno != was.IndexIno || now.TxID != was.TxID:
			err = errors.New("the index was written since")
		}
	}
	if err != nil {
		ix.log.Info("index of synced files: the records parked by the last run are dropped; reconcile compares what they recorded again",
			zap.String(syncer.LogReason, err.Error()))
		return false
	}
	ix.Queue(updates...)
	return true
}

// encodePark is s and the updates, then a CRC-32C of it all.
func encodePark(s stamp, batch map[string]Update) []byte {
	var b []byte
	str := func(v string) { b = append(binary.AppendUvarint(b, uint64(len(v))), v...) }
	b = append(b, parkMagic...)
	str(s.Boot)
	for _, v := range []uint64{s.Mount, s.Dev, s.Root, s.IndexIno, s.TxID} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(batch)))
	for _, u := range batch {
		str(u.Dir)
		var flags byte
		if u.Exact {
			flags |= 1
		}
		if u.Clean != nil {
			flags |= 2
		}
		b = append(b, flags)
		if u.Clean != nil {
			b = append(b, u.Clean.bytes()...)
		}
		b = binary.AppendUvarint(b, uint64(len(u.Drop)))
		for _, name := range u.Drop {
			str(name)
		}
		b = binary.AppendUvarint(b, uint64(len(u.Put)))
		for name, r := range u.Put {
			str(name)
			str(string(r.bytes()))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errTorn = errors.New("torn or damaged")

// decodePark reads what encodePark wrote, checking every length, path
// and record.
func decodePark(b []byte) (stamp, []Update, error) {
	var s stamp
	if len(b) < len(parkMagic)+4 || !bytes.HasPrefix(b, []byte(parkMagic)) ||
		crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return s, nil, errTorn
	}
	r := parkReader{b: b[len(parkMagic) : len(b)-4]}
	s.Boot = r.str()
	for _, v := range []*uint64{&s.Mount, &s.Dev, &s.Root, &s.IndexIno, &s.TxID} {
		*v = r.u64()
	}
	n := r.count()
	updates := make([]Update, 0, n)
	for range n {
		u := Update{Dir: r.str()}
		if r.err == nil && syncer.CheckPath(u.Dir) != nil {
			r.err = fmt.Errorf("directory %q: not a path", u.Dir)
		}
		flags := r.byte()
		u.Exact = flags&1 != 0
		if flags&2 != 0 {
			c, ok := parseClean(r.take(cleanLen))
			if !ok && r.err == nil {
				r.err = errTorn
			}
			u.Clean = &c
		}
		for range r.count() {
			u.Drop = append(u.Drop, r.name())
		}
		np := r.count()
		u.Put = make(map[string]Record, np)
		for range np {
			name := r.name()
			rec, ok := parse([]byte(r.str()))
			if !ok && r.err == nil {
				r.err = errTorn
			}
			u.Put[name] = rec
		}
		if r.err != nil {
			return s, nil, r.err
		}
		updates = append(updates, u)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errTorn
	}
	return s, updates, r.err
}

// parkReader reads a park's fields; the first error sticks and every
// read after it returns zero values.
type parkReader struct {
	b   []byte
	err error
}

func (r *parkReader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		if r.err == nil {
			r.err = errTorn
		}
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *parkReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errTorn
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count is a number of items, each at least one byte long.
func (r *parkReader) count() int {
	v := r.uvarint()
	if v > uint64(len(r.b)) {
		if r.err == nil {
			r.err = errTorn
		}
		return 0
	}
	return int(v)
}

func (r *parkReader) str() string { return string(r.take(r.count())) }

func (r *parkReader) name() string {
	n := r.str()
	if r.err == nil && syncer.CheckName(n) != nil {
		r.err = fmt.Errorf("entry %q: not a name", n)
	}
	return n
}

func (r *parkReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (r *parkReader) byte() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

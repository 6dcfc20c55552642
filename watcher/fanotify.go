package watcher

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
)

// Backends.
const (
	BackendAuto     = "auto"
	BackendFanotify = "fanotify"
	BackendInotify  = "inotify"
)

// fanMask is what the filesystem mark reports: every change of a directory
// entry (FAN_RENAME with both names), content written and closed,
// attributes, for directories too.
const fanMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_RENAME | unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE |
	unix.FAN_ATTRIB | unix.FAN_ONDIR

// fan is the fanotify backend: one mark on the whole filesystem of the
// source, reporting each event with its directory's file handle and the
// entry's name, and no per-directory state in the kernel. Its reader turns
// handles into paths below the root (open_by_handle_at against the root,
// then the descriptor's path), caching each directory's answer, "outside"
// included, until a directory is moved.
type fan struct {
	file *os.File // the fanotify group, non-blocking: Close ends a Read
	fd   int      // file's descriptor, for marks (os.File.Fd would make it blocking)
	root string
	// ignored counts the ignore marks on directories outside the root
	// (see resolve), until a directory rename flushes them.
	ignored int
	events  int // events read, below the root or not

	dirs map[string]string // by handle: the dir's path below root, or outside
}

// outside marks a directory that is not below the root in fan.dirs.
const outside = "\x00outside"

// maxDirs bounds fan.dirs; past it, the cache starts over.
const maxDirs = 1 << 16

// maxIgnored bounds the ignore marks on directories outside the root.
const maxIgnored = 1 << 13

// ignoreMask is what an ignore mark on a directory outside the root drops
// in the kernel: its entries' events, never a rename (FAN_RENAME says when
// a directory moves, in or out, and the marks must go).
const ignoreMask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_MODIFY | unix.FAN_CLOSE_WRITE | unix.FAN_ATTRIB | unix.FAN_EVENT_ON_CHILD

// FanotifyError says why the fanotify backend cannot watch a tree.
type FanotifyError struct {
	Op  string
	Err error
}

func (e *FanotifyError) Error() string {
	why := ""
	switch {
	case errors.Is(e.Err, unix.EPERM):
		why = ": needs CAP_SYS_ADMIN (run as root)"
	case errors.Is(e.Err, unix.EXDEV):
		why = ": the source is a btrfs subvolume, or its filesystem has no unique id"
	case errors.Is(e.Err, unix.ENODEV), errors.Is(e.Err, unix.EOPNOTSUPP):
		why = ": the filesystem gives no file handles (NFS, SMB, FUSE and some others)"
	case errors.Is(e.Err, unix.EINVAL):
		why = ": the kernel lacks filesystem marks with names and FAN_RENAME (Linux 5.17)"
	}
	return fmt.Sprintf("fanotify %s: %v%s", e.Op, e.Err, why)
}

func (e *FanotifyError) Unwrap() error { return e.Err }

// openFan marks the filesystem of root.
func openFan(root string) (*fan, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME|unix.FAN_REPORT_FID|unix.FAN_REPORT_TARGET_FID,
		unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return nil, &FanotifyError{"init", err}
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, fanMask, unix.AT_FDCWD, root); err != nil {
		unix.Close(fd)
		return nil, &FanotifyError{"mark " + root, err}
	}
	// Paths come back as the kernel has them: with the root's symlinks resolved.
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("resolve %s: %w", root, err)
	}
	return &fan{file: os.NewFile(uintptr(fd), "fanotify"), fd: fd, root: real, dirs: map[string]string{}}, nil
}

func (f *fan) Close() error {
	return f.file.Close()
}

// fanEvent is one event below the root, resolved.
type fanEvent struct {
	mask     uint64
	rel      string // the entry changed, "" the root
	from     string // FAN_RENAME: the old entry
	fromIn   bool   // FAN_RENAME: the old entry was below the root
	toIn     bool   // the entry (for FAN_RENAME, the new one) is below the root
	id       fileID // FAN_RENAME of a directory: the directory's identity
	overflow bool   // the kernel's queue overflowed: events were lost
}

// read blocks until events come and returns those below the root.
func (f *fan) read(buf []byte) ([]fanEvent, error) {
	n, err := f.file.Read(buf)
	if err != nil {
		return nil, err
	}
	var out []fanEvent
	for b := buf[:n]; len(b) >= unix.FAN_EVENT_METADATA_LEN; {
		evLen := int(binary.NativeEndian.Uint32(b[0:4]))
		metaLen := int(binary.NativeEndian.Uint16(b[6:8]))
		if evLen < metaLen || evLen > len(b) {
			break
		}
		f.events++
		mask := binary.NativeEndian.Uint64(b[8:16])
		if fd := int32(binary.NativeEndian.Uint32(b[16:20])); fd >= 0 {
			unix.Close(int(fd)) // never asked for, never kept
		}
		if ev, ok := f.event(mask, b[metaLen:evLen]); ok {
			out = append(out, ev)
		}
		b = b[evLen:]
	}
	return out, nil
}

// event resolves one event's info records; false when it is outside the
// root, or its directory is gone already (the parent's event covers it).
func (f *fan) event(mask uint64, info []byte) (fanEvent, bool) {
	if mask&unix.FAN_Q_OVERFLOW != 0 {
		return fanEvent{overflow: true}, true
	}
	ev := fanEvent{mask: mask}
	var oldRel, newRel string
	var oldIn, newIn, seen bool
	for len(info) >= 4 {
		typ, l := info[0], int(binary.NativeEndian.Uint16(info[2:4]))
		if l < 4 || l > len(info) {
			break
		}
		rec := info[4:l]
		info = info[l:]
		switch typ {
		case unix.FAN_EVENT_INFO_TYPE_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
		case unix.FAN_EVENT_INFO_TYPE_FID:
			if mask&unix.FAN_RENAME != 0 && mask&unix.FAN_ONDIR != 0 {
				ev.id = f.identify(rec) // what pairs renames in a row, whatever the names
			}
			continue
		default:
			continue
		}
		rel, in := f.entry(rec)
		switch typ {
		case unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
			oldRel, oldIn = rel, in
		case unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
			newRel, newIn = rel, in
		default:
			newRel, newIn = rel, in
		}
		seen = true
	}
	if !seen {
		return ev, false
	}
	if mask&unix.FAN_RENAME != 0 && mask&unix.FAN_ONDIR != 0 {
		// Every path below the moved directory changed, and a directory
		// ignored as outside may be inside now.
		clear(f.dirs)
		if f.ignored > 0 && unix.FanotifyMark(f.fd, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, "") == nil {
			f.ignored = 0
		}
	}
	ev.rel, ev.toIn, ev.from, ev.fromIn = newRel, newIn, oldRel, oldIn
	return ev, newIn || oldIn
}

// openHandle opens the object of a file handle (O_PATH), against the
// root opened for the call only: a descriptor kept open would keep the
// source's filesystem from being unmounted (an inotify watch does not, nor
// does the mark). The root replaced meanwhile gives ESTALE, or a path
// outside it.
func (f *fan) openHandle(htype int32, h []byte, flags int) (int, error) {
	rfd, err := unix.Open(f.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // not O_PATH: open_by_handle_at refuses it
	if err != nil {
		return -1, err
	}
	defer unix.Close(rfd)
	return unix.OpenByHandleAt(rfd, unix.NewFileHandle(htype, h), flags|unix.O_CLOEXEC)
}

// handle splits a FID record (fsid, file handle[, name]) into the handle's
// type, its bytes and what follows; false when it does not parse.
func handle(rec []byte) (htype int32, h, rest []byte, ok bool) {
	if len(rec) < 16 {
		return 0, nil, nil, false
	}
	hlen := int(binary.NativeEndian.Uint32(rec[8:12]))
	if 16+hlen > len(rec) {
		return 0, nil, nil, false
	}
	return int32(binary.NativeEndian.Uint32(rec[12:16])), rec[16 : 16+hlen], rec[16+hlen:], true
}

// identify is the device and inode of the object of a FID record, zero
// when it is gone.
func (f *fan) identify(rec []byte) fileID {
	htype, h, _, ok := handle(rec)
	if !ok {
		return fileID{}
	}
	fd, err := f.openHandle(htype, h, unix.O_PATH)
	if err != nil {
		return fileID{}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return fileID{}
	}
	return fileID{st.Dev, st.Ino}
}

// entry resolves a DFID_NAME record (fsid, file handle, name) to the
// entry's path below the root, false when it is not below it.
func (f *fan) entry(rec []byte) (string, bool) {
	htype, h, name, ok := handle(rec)
	if !ok {
		return "", false
	}
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	key := string(rec[8 : 16+len(h)]) // the handle as the kernel gave it
	dir, ok := f.dirs[key]
	if !ok {
		var keep bool
		dir, keep = f.resolve(htype, h)
		if len(f.dirs) >= maxDirs {
			clear(f.dirs)
		}
		if keep {
			f.dirs[key] = dir
		}
	}
	if dir == outside {
		return "", false
	}
	n := string(name)
	switch {
	case n == "" || n == ".":
		return dir, true // an event on the directory itself
	case dir == "":
		return n, true
	}
	return dir + "/" + n, true
}

// resolve says where the directory with this handle is below the root, or
// outside (gone too: a deleted directory's events are its parent's), and
// whether the answer may be kept: not after a failure that may pass.
func (f *fan) resolve(htype int32, h []byte) (string, bool) {
	fd, err := f.openHandle(htype, h, unix.O_RDONLY|unix.O_DIRECTORY) // not O_PATH: fanotify_mark refuses it
	if err != nil {
		return outside, errors.Is(err, unix.ESTALE) // gone for good; anything else may pass
	}
	defer unix.Close(fd)
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	switch {
	case err != nil:
		return outside, false
	case strings.HasSuffix(p, " (deleted)"):
		return outside, true
	}
	rel, ok := syncer.Rel(f.root, p)
	if !ok {
		// Its next events are dropped by the kernel: another writer on
		// the filesystem costs nothing more here.
		if f.ignored < maxIgnored && unix.FanotifyMark(f.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORE_SURV, ignoreMask, fd, "") == nil {
			f.ignored++
		}
		return outside, true
	}
	return rel, true
}

// readFan reads f's events on a goroutine of its own until stop, which
// waits for it.
func (w *Watcher) readFan(f *fan) (<-chan []fanEvent, func()) {
	ch := make(chan []fanEvent, 16)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		buf := make([]byte, 256<<10)
		for {
			evs, err := f.read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					w.log.Error("read fanotify events", zap.Error(err))
				}
				return
			}
			if len(evs) == 0 {
				continue
			}
			select {
			case ch <- evs:
			case <-done:
				return
			}
		}
	}()
	return ch, func() {
		close(done)
		f.Close() // ends the Read
		wg.Wait()
	}
}

// handleFan is handle for the fanotify backend. One event may carry
// several bits (the kernel merges events on one entry); each is taken in
// the order they happen in.
func (w *Watcher) handleFan(ev fanEvent) {
	if ev.overflow {
		w.overflow(errors.New("fanotify queue overflow"))
		return
	}
	if ce := w.log.Check(zap.DebugLevel, "fs event"); ce != nil {
		ce.Write(zap.String(syncer.LogDir, ev.rel), zap.String("from", ev.from), zap.String("mask", fmt.Sprintf("%#x", ev.mask)))
	}
	isDir := ev.mask&unix.FAN_ONDIR != 0
	if ev.mask&unix.FAN_RENAME != 0 {
		w.renamed(ev, isDir)
		return
	}
	rel := ev.rel
	if rel == "" || w.opts.Excludes.Match(rel) {
		return // the root's own attributes, as with inotify; or left out
	}
	parent := syncer.Scope{Dir: syncer.Parent(rel)}
	if ev.mask&unix.FAN_CREATE != 0 {
		w.note(parent, syncer.ReasonChange)
		if isDir {
			w.note(syncer.Scope{Dir: rel, Recursive: true}, syncer.ReasonNewDir)
		} else if fi, err := os.Lstat(syncer.Join(w.opts.Root, rel)); err == nil && fi.Mode().IsRegular() {
			w.track(rel)
		}
	}
	if ev.mask&unix.FAN_MODIFY != 0 && !isDir && !w.track(rel) {
		w.note(parent, syncer.ReasonChange)
	}
	if ev.mask&unix.FAN_CLOSE_WRITE != 0 {
		w.openMu.Lock()
		o, ok := w.open[rel]
		if ok {
			o.next = time.Now() // closed: looked at with the next flush
		}
		w.openMu.Unlock()
		if !ok {
			w.note(parent, syncer.ReasonChange)
		}
	}
	if ev.mask&unix.FAN_ATTRIB != 0 {
		w.note(parent, syncer.ReasonChange)
	}
	if ev.mask&unix.FAN_DELETE != 0 {
		w.forget(rel)
		w.note(parent, syncer.ReasonChange)
	}
}

// renamed is a FAN_RENAME: both names in one event. A directory renamed
// within the tree is a move, folded with the renames before it; moved in
// from outside, it is a new subtree.
func (w *Watcher) renamed(ev fanEvent, isDir bool) {
	from, to := ev.from, ev.rel
	fromIn := ev.fromIn && from != "" && !w.opts.Excludes.Match(from)
	toIn := ev.toIn && to != "" && !w.opts.Excludes.Match(to)
	if fromIn {
		w.forget(from)
		w.note(syncer.Scope{Dir: syncer.Parent(from)}, syncer.ReasonChange)
	}
	if !toIn {
		return // moved out: its old parent's sync deletes it
	}
	w.note(syncer.Scope{Dir: syncer.Parent(to)}, syncer.ReasonChange)
	if !isDir {
		return
	}
	if fromIn {
		id := ev.id
		m := syncer.Move{From: from, To: to, Ino: id.ino}
		if id != (fileID{}) {
			if prev, ok := w.moved[id]; ok && prev.To == m.From {
				m.From = prev.From // renamed again: one move from the first name
				w.unnoteMove(prev)
			}
			w.moved[id] = m
		}
		switch {
		case id == (fileID{}):
			// Gone already, or not identified: copied, if anything is left.
		case m.Check() == nil:
			w.noteMove(m, time.Now())
			return
		default:
			return // back where it started: its parents' changes say it all
		}
	}
	w.note(syncer.Scope{Dir: to, Recursive: true}, syncer.ReasonNewDir)
}

// CheckFanotify says why the fanotify backend cannot watch root, nil when
// it can: it marks root's filesystem and lets go.
func CheckFanotify(root string) error {
	f, err := openFan(root)
	if err != nil {
		return err
	}
	return f.Close()
}

// unnoteMove takes back a move noted but not published, which a later
// rename of the same directory replaces: the scope of its intermediate
// name goes with it, when the move was all it was pending for.
func (w *Watcher) unnoteMove(m syncer.Move) {
	for _, s := range []syncer.Scope{{Dir: m.To, Recursive: true}, {Dir: syncer.Parent(m.From)}} {
		p, ok := w.pending[s]
		if !ok {
			continue
		}
		p.moves = slices.DeleteFunc(p.moves, func(x syncer.Move) bool { return x == m })
		if s.Recursive && p.reason == syncer.ReasonMove && len(p.moves) == 0 {
			delete(w.pending, s)
			continue
		}
		w.pending[s] = p
	}
}

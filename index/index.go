// Package index keeps, per synced source file, what it was when it last
// reached the backup: inode, size, mtime and change time (ctime). A file
// whose ctime or inode moved while its size and mtime stayed (rewritten
// by a tool that keeps mtimes, `touch -r`, `cp -p` over it) looks equal to
// a size-and-mtime compare, rsync's quick check included; the index is how
// reconcile still finds it. Directories have records too, their inode
// being what a move is known by: written when a directory's whole subtree
// was synced (or moved there), kept as they are by a sync of the parent
// alone; the reconcile walk recognises a directory moved while syncer was
// down by them, and a move finds the backup's copy of a directory put
// aside in the trash (Displace). Per directory, a Clean says what it was
// on both sides when last known equal, so that a reconcile need not read
// it again, and whether the records then listed its backup entries; a
// sync keeps it (Syncer, from what it recorded: nothing is listed again),
// and the time of the last deep compare is kept (DeepAt).
//
// One record per path, keyed by its directory and name, so that the
// records of one directory are read in one range scan: a B+tree file in
// the state directory (bbolt), crash-safe (copy-on-write pages, fsync on
// commit, the backup's filesystem flushed first: see Open),
// memory-bounded (pages are mapped, not loaded). Workers queue the
// records of the directories they synced once the sync succeeded
// (Syncer); the reconcile walk reads them and queues the files the index
// lacks. Queued records are read back at once and written together, one
// commit per FlushEvery or per FlushDirs directories: a copy of many
// small directories does not wait for one fsync each. Close does not
// wait for the backup's disk at all: it parks what is queued, and the
// next Open commits it once it has flushed the backup (park.go). A
// crash loses at most the records queued or parked since the last
// commit; a file whose newest record was lost has an older one, whose
// ctime no longer matches (its content is compared once), or none. A missing or unreadable index is
// started anew: a file without a record is trusted by its size and mtime,
// as before the index existed, and recorded, so that the next full
// reconcile has rebuilt it.
//
// It imports the root package, internal helpers, bbolt and zap.
package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// How often, or after how many directories, queued records are committed.
const (
	FlushEvery = 200 * time.Millisecond
	FlushDirs  = 512
)

// Record is one synced file or directory as the source had it.
type Record struct {
	Ino   uint64
	Size  int64
	Mtime int64 // ns
	Ctime int64 // ns
	Dir   bool  // a directory: its inode is what a move is known by
}

const recordLen = 32 // a directory's has one byte more

func (r Record) bytes() []byte {
	b := make([]byte, recordLen, recordLen+1)
	binary.LittleEndian.PutUint64(b[0:], r.Ino)
	binary.LittleEndian.PutUint64(b[8:], uint64(r.Size))
	binary.LittleEndian.PutUint64(b[16:], uint64(r.Mtime))
	binary.LittleEndian.PutUint64(b[24:], uint64(r.Ctime))
	if r.Dir {
		b = append(b, 'd')
	}
	return b
}

func parse(b []byte) (Record, bool) {
	if len(b) != recordLen && (len(b) != recordLen+1 || b[recordLen] != 'd') {
		return Record{}, false
	}
	return Record{Ino: binary.LittleEndian.Uint64(b[0:]), Size: int64(binary.LittleEndian.Uint64(b[8:])),
		Mtime: int64(binary.LittleEndian.Uint64(b[16:])), Ctime: int64(binary.LittleEndian.Uint64(b[24:])),
		Dir: len(b) > recordLen}, true
}

var (
	files     = []byte("files")
	displaced = []byte("displaced") // source directory inode → where in the trash its backup went
	cleans    = []byte("clean")     // directory → Clean
	meta      = []byte("meta")      // facts about the index itself (deepKey)
)

var deepKey = []byte("deep") // when the last compare of every backup entry ended well

// Clean is what a directory was on both sides when its entries were last
// known equal (a reconcile's compare of both found no difference, or a
// sync made them equal): its own stamp (Stamp) in the source and in the
// backup. A directory's mtime and ctime move whenever an entry is added,
// removed or renamed in it, and its ctime whenever its own attributes
// change; a file's ctime whenever its content or attributes do. So while
// both stamps are what Clean says and each source entry is what its record
// says, the directory's entries are still equal, and a reconcile need not
// read the backup's. What this does not see is a backup file changed in
// place by someone else (its ctime is not recorded): a deep compare
// (reconcile's Options.Deep) reads every backup entry.
type Clean struct {
	Src, Dst Record
	// Listed says that every backup entry was then a regular file or a
	// directory this index holds the record of: while Dst holds, those
	// records are the backup directory's listing, and a reconcile compares
	// the source's entries with them instead of reading the backup's.
	Listed bool
}

const cleanLen = 2*recordLen + 1

func (c Clean) bytes() []byte {
	b := append(c.Src.bytes()[:recordLen], c.Dst.bytes()[:recordLen]...)
	if c.Listed {
		return append(b, 'l')
	}
	return append(b, '-')
}

func parseClean(b []byte) (Clean, bool) {
	if len(b) != cleanLen {
		return Clean{}, false
	}
	s, _ := parse(b[:recordLen])
	d, _ := parse(b[recordLen : 2*recordLen])
	s.Dir, d.Dir = true, true
	return Clean{Src: s, Dst: d, Listed: b[2*recordLen] == 'l'}, true
}

// Index is the index of synced files. It is safe for concurrent use.
type Index struct {
	db    *bolt.DB
	path  string
	log   *zap.Logger
	flush int // the backup's root, whose filesystem is flushed before a commit; -1: none

	commits sync.Mutex // one Flush at a time
	// mu guards what follows; it is never held while the file is read
	// (see queued).
	mu       sync.RWMutex
	pending  map[string]Update // queued, by directory
	flushing map[string]Update // being committed
	kick     chan struct{}     // FlushDirs reached
	stop     chan struct{}
	done     chan struct{}

	expectMu sync.Mutex
	expect   map[string]expect // Expect's, until a sync takes them
}

// Open opens (creating it) the index file at path and starts committing
// what is queued; failed commits are logged to log. One process holds it
// at a time (a lock on the file). A file that cannot be read as an index
// (damaged, truncated) is moved aside to path.damaged-<time> and a new one
// is started: the index is a cache of what a full compare rebuilds.
//
// backup is the root of the backup the records are of: before each commit
// its filesystem is flushed (syncfs). The kernel writes a file's data back
// seconds after the copy wrote it, its directory entry sooner; after a
// crash of the backup's host the file is there, empty, while its record
// says it was synced, and no reconcile but a deep one would look at it
// again. With the flush first, a record never gets ahead of the data. ""
// flushes nothing (records of no backup, in tests of the index alone).
func Open(path, backup string, log *zap.Logger) (*Index, error) {
	flush := -1
	if backup != "" {
		fd, err := unix.Open(backup, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open index %s: %w", path, &os.PathError{Op: "open the backup", Path: backup, Err: err})
		}
		flush = fd
	}
	db, err := open(path)
	if err != nil && !errors.Is(err, berrors.ErrTimeout) {
		aside := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405"))
		if rerr := os.Rename(path, aside); rerr == nil {
			db, err = open(path)
		}
	}
	if err != nil {
		if flush >= 0 {
			unix.Close(flush)
		}
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	prefetch(path)
	if log == nil {
		log = zap.NewNop()
	}
	ix := &Index{db: db, path: path, log: log, flush: flush, pending: map[string]Update{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if ix.unpark() {
		// Committed at once, after the flush that makes them true (Queue
		// may have asked already: past FlushDirs directories).
		select {
		case ix.kick <- struct{}{}:
		default:
		}
	}
	go ix.flushLoop()
	return ix, nil
}

// prefetch asks the kernel to read the index file ahead, in the
// background: a walk reads the records of every directory, which from a
// cold cache would otherwise be one page fault each, at random.
func prefetch(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED)
}

func open(path string) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	// The buckets are made once: a write transaction on every open would
	// cost two fdatasyncs of the index before a reconcile could start.
	buckets := [][]byte{files, displaced, cleans, meta}
	missing := false
	err = db.View(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			missing = missing || tx.Bucket(b) == nil
		}
		return nil
	})
	if err == nil && missing {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range buckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close parks what is queued, for the next Open to commit (park.go),
// or where it cannot, commits it; then it closes the index file.
func (ix *Index) Close() error {
	close(ix.stop)
	<-ix.done
	ix.commits.Lock()
	parked := ix.park()
	ix.commits.Unlock()
	var err error
	if !parked {
		err = ix.Flush()
	}
	err = errors.Join(err, ix.db.Close())
	if ix.flush >= 0 {
		unix.Close(ix.flush)
	}
	return err
}

// durable flushes the backup's filesystem (Open): what was written there
// before is on disk when it returns.
func (ix *Index) durable() error {
	if ix.flush < 0 {
		return nil
	}
	if err := unix.Syncfs(ix.flush); err != nil {
		return fmt.Errorf("flush the backup's filesystem before recording: %w", err)
	}
	return nil
}

// key is dir, NUL, name: the records of one directory are adjacent, and
// no name holds a NUL.
func key(dir, name string) []byte {
	k := make([]byte, 0, len(dir)+1+len(name))
	return append(append(append(k, dir...), 0), name...)
}

// Dir returns the records of the entries of dir (relative to the source
// root), by name, queued ones included.
func (ix *Index) Dir(dir string) (map[string]Record, error) {
	out := map[string]Record{}
	_, _, err := ix.DirInto(dir, out)
	return out, err
}

// DirInto is Dir into out, which it empties first (a walk reuses one map
// from directory to directory), and dir's Clean, read in the same
// transaction.
func (ix *Index) DirInto(dir string, out map[string]Record) (Clean, bool, error) {
	clear(out)
	prefix := key(dir, "")
	q := ix.queued(dir)
	c, cok := newestClean(q)
	err := ix.db.View(func(tx *bolt.Tx) error {
		if !cok {
			c, cok = parseClean(tx.Bucket(cleans).Get(cleanKey(dir)))
		}
		cur := tx.Bucket(files).Cursor()
		for k, v := cur.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = cur.Next() {
			if r, ok := parse(v); ok {
				out[string(k[len(prefix):])] = r
			}
		}
		return nil
	})
	for _, u := range q {
		u.applyTo(out)
	}
	return c, cok, err
}

// Clean returns what Dir was on both sides when its entries were last
// known equal (see Clean), queued ones included.
func (ix *Index) Clean(dir string) (Clean, bool, error) {
	if c, ok := newestClean(ix.queued(dir)); ok {
		return c, true, nil
	}
	var c Clean
	var ok bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		c, ok = parseClean(tx.Bucket(cleans).Get(cleanKey(dir)))
		return nil
	})
	return c, ok, err
}

// queued returns the updates of dir not yet committed, oldest first: the
// one being committed, then the one queued since. The file is read after,
// without the lock: the walk's goroutines read at once, and a commit never
// waits for them. That read holds every commit that ended before this
// call, maybe the one being committed, maybe later ones; the updates taken
// here, applied on top, then give each record as it was at this call or
// newer. Applying an update again changes nothing, and queued updates are
// never changed (Queue merges into new ones), so they may be read after
// the lock is released.
func (ix *Index) queued(dir string) []Update {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []Update
	for _, q := range []map[string]Update{ix.flushing, ix.pending} {
		if u, ok := q[dir]; ok {
			out = append(out, u)
		}
	}
	return out
}

// newestClean is the newest Clean among updates (oldest first).
func newestClean(updates []Update) (Clean, bool) {
	for _, u := range slices.Backward(updates) {
		if u.Clean != nil {
			return *u.Clean, true
		}
	}
	return Clean{}, false
}

// maxExpect bounds what Expect keeps: past it (jobs that never ran), it
// starts anew.
const maxExpect = 1 << 16

// Expect notes, from a reconcile walk, that the only differences in dir
// when it was as c says were the regular files files (paths relative to
// the source root, as its job names them): once a sync of those succeeds
// with dir still as c says, dir is equal (Syncer records its Clean, Listed
// when c is: the records then listed the backup's entries). It is kept in
// memory, for the syncs of this process.
func (ix *Index) Expect(dir string, c Clean, files []string) {
	ix.expectMu.Lock()
	defer ix.expectMu.Unlock()
	if ix.expect == nil || len(ix.expect) >= maxExpect {
		ix.expect = map[string]expect{}
	}
	ix.expect[dir] = expect{c, files}
}

type expect struct {
	clean Clean
	files []string
}

// expected returns, and forgets, what Expect noted for dir, when a sync
// of files covers what it named.
func (ix *Index) expected(dir string, files []string) (Clean, bool) {
	ix.expectMu.Lock()
	defer ix.expectMu.Unlock()
	e, ok := ix.expect[dir]
	if !ok {
		return Clean{}, false
	}
	delete(ix.expect, dir)
	for _, f := range e.files {
		if !slices.Contains(files, f) {
			return Clean{}, false
		}
	}
	return e.clean, true
}

// DeepAt is when the last compare of every backup entry of the whole tree
// ended well (zero: never).
func (ix *Index) DeepAt() time.Time {
	var t time.Time
	_ = ix.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(meta).Get(deepKey); len(v) == 8 {
			t = time.Unix(0, int64(binary.LittleEndian.Uint64(v)))
		}
		return nil
	})
	return t
}

// SetDeepAt records t as DeepAt.
func (ix *Index) SetDeepAt(t time.Time) error {
	return ix.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(meta).Put(deepKey, binary.LittleEndian.AppendUint64(nil, uint64(t.UnixNano())))
	})
}

// Update is a change to the records of one directory.
type Update struct {
	Dir string
	// Put records these entries of Dir, by name.
	Put map[string]Record
	// Exact says that Put is every file of Dir now: records of other
	// names are removed.
	Exact bool
	// Drop names entries of Dir whose records are removed (files gone
	// from the source), before Put.
	Drop []string
	// Clean, when set, is Dir's new Clean.
	Clean *Clean
}

// applyTo makes recs, the records of u.Dir, what they are after u.
func (u Update) applyTo(recs map[string]Record) {
	if u.Exact {
		for name := range recs {
			if _, keep := u.Put[name]; !keep {
				delete(recs, name)
			}
		}
	}
	for _, name := range u.Drop {
		delete(recs, name)
	}
	for name, r := range u.Put {
		recs[name] = r
	}
}

// then is u followed by v, an update of the same directory.
func (u Update) then(v Update) Update {
	if v.Clean == nil {
		v.Clean = u.Clean
	}
	if v.Exact {
		return v
	}
	put := make(map[string]Record, len(u.Put)+len(v.Put))
	for name, r := range u.Put {
		put[name] = r
	}
	var drop []string
	for _, name := range u.Drop {
		if !slices.Contains(v.Drop, name) {
			if _, again := v.Put[name]; !again {
				drop = append(drop, name)
			}
		}
	}
	for _, name := range v.Drop {
		delete(put, name)
		drop = append(drop, name)
	}
	for name, r := range v.Put {
		put[name] = r
	}
	if u.Exact {
		drop = nil // put is every record
	}
	return Update{Dir: u.Dir, Put: put, Exact: u.Exact, Drop: drop, Clean: v.Clean}
}

// Queue adds updates to be committed within FlushEvery; Dir reads them at
// once. The caller does not change their Put maps after.
func (ix *Index) Queue(updates ...Update) {
	ix.mu.Lock()
	for _, u := range updates {
		if prev, ok := ix.pending[u.Dir]; ok {
			u = prev.then(u)
		}
		ix.pending[u.Dir] = u
	}
	full := len(ix.pending) >= FlushDirs
	ix.mu.Unlock()
	if full {
		select {
		case ix.kick <- struct{}{}:
		default:
		}
	}
}

func (ix *Index) flushLoop() {
	defer close(ix.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ix.stop:
			return
		case <-t.C:
		case <-ix.kick:
		}
		if err := ix.Flush(); err != nil {
			ix.log.Warn("index of synced files: records not written; reconcile compares their sizes and mtimes", zap.Error(err))
		}
	}
}

// Flush commits what is queued, in one transaction (one fsync), and
// returns once it is on disk.
func (ix *Index) Flush() error {
	ix.commits.Lock()
	defer ix.commits.Unlock()
	ix.mu.Lock()
	batch := ix.pending
	if len(batch) == 0 {
		ix.mu.Unlock()
		return nil
	}
	ix.flushing, ix.pending = batch, map[string]Update{}
	ix.mu.Unlock()
	// Every record of the batch was queued after its sync wrote the
	// backup: flushed now, that is on disk before the records are.
	err := ix.durable()
	if err == nil {
		err = ix.commit(batch)
	}
	ix.mu.Lock()
	ix.flushing = nil
	ix.mu.Unlock()
	return err
}

func (ix *Index) commit(batch map[string]Update) error {
	return ix.db.Update(func(tx *bolt.Tx) error {
		b, cb := tx.Bucket(files), tx.Bucket(cleans)
		for _, u := range batch {
			if u.Clean != nil {
				if err := cb.Put(cleanKey(u.Dir), u.Clean.bytes()); err != nil {
					return err
				}
			}
			if u.Exact {
				prefix := key(u.Dir, "")
				var gone [][]byte
				c := b.Cursor()
				for k, _ := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
					if _, keep := u.Put[string(k[len(prefix):])]; !keep {
						gone = append(gone, slices.Clone(k))
					}
				}
				for _, k := range gone {
					if err := b.Delete(k); err != nil {
						return err
					}
				}
			}
			for _, name := range u.Drop {
				if err := b.Delete(key(u.Dir, name)); err != nil {
					return err
				}
			}
			for name, r := range u.Put {
				if err := b.Put(key(u.Dir, name), r.bytes()); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Move says that the directory from (relative to the source root) was
// moved to to on the backup, where the source has it as rec: the records
// of from and below it are dropped (the sync of to writes its own), and
// to's is rec. An empty to only drops from's.
func (ix *Index) Move(from, to string, rec Record) error {
	if err := ix.Flush(); err != nil {
		return err
	}
	ix.commits.Lock()
	defer ix.commits.Unlock()
	return ix.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(files)
		if err := b.Delete(entryKey(from)); err != nil {
			return err
		}
		for _, prefix := range [][]byte{key(from, ""), []byte(from + "/")} {
			if err := deletePrefix(b, prefix); err != nil {
				return err
			}
		}
		if err := deletePrefix(tx.Bucket(cleans), cleanKey(from)); err != nil {
			return err
		}
		if to == "" {
			return nil
		}
		return b.Put(entryKey(to), rec.bytes())
	})
}

// cleanKey is dir's key among the Clean records: dir and a slash, so that
// those of a subtree share its prefix (and the root's is not empty).
func cleanKey(dir string) []byte { return []byte(dir + "/") }

// deletePrefix deletes from b the keys that start with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var gone [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
		gone = append(gone, slices.Clone(k))
	}
	for _, k := range gone {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Entry is the record of the entry at p (relative to the source root).
func (ix *Index) Entry(p string) (Record, bool, error) {
	dir, name := path.Split(p)
	recs, err := ix.Dir(strings.TrimSuffix(dir, "/"))
	r, ok := recs[name]
	return r, ok, err
}

// entryKey is the key of the record of the entry at p.
func entryKey(p string) []byte {
	dir, name := path.Split(p)
	return key(strings.TrimSuffix(dir, "/"), name)
}

// Displace notes that the backup of the source directory ino was moved
// aside to at (a path in the backup's trash), where a move of that
// directory finds it (Displaced).
func (ix *Index) Displace(ino uint64, at string) error {
	return ix.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(displaced).Put(binary.BigEndian.AppendUint64(nil, ino), []byte(at))
	})
}

// Displaced returns, and forgets, where the backup of the source
// directory ino was moved aside (Displace).
func (ix *Index) Displaced(ino uint64) (at string, ok bool, err error) {
	k := binary.BigEndian.AppendUint64(nil, ino)
	err = ix.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(displaced)
		if v := b.Get(k); v != nil {
			at, ok = string(v), true
			return b.Delete(k)
		}
		return nil
	})
	return at, ok, err
}

// Len counts the records.
func (ix *Index) Len() int {
	var n int
	_ = ix.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(files).Stats().KeyN
		return nil
	})
	return n
}

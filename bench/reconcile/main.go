// Command reconcile-bench times, side by side in one run on generated
// media-like trees, what a sysadmin would use for a full backup pass:
//
//   - cp -a (cold copy only: the ceiling of a plain copy),
//   - one serial rsync -a --delete of the whole tree (the old nightly job),
//   - one rsync -a --delete per project in a pool of GOMAXPROCS (the old
//     script's fix),
//   - syncer reconcile (standalone: its own queue and worker pool), and
//     syncer reconcile --deep (every backup entry read),
//
// for (a) a cold copy into an empty backup, (b) no change, (c) 1% of the
// files changed; on a uniform tree and on a skewed one where one project
// holds 80% of the bytes. It prints medians and ratios. Cold copies are
// timed until their data is on disk (a trailing sync). Every cell ends with
// a full comparison of source and backup; a difference fails loudly.
//
// The backup is a filesystem of its own (ext4 in a loop-mounted image file,
// as a backup NAS is another device), made anew before each cold copy.
// Emptying one directory with rm -rf between cold copies measures something
// else: for a minute after 30,000 inodes are freed, ext4 skips each of them
// as "recently deleted" on every file it creates, and perf then shows most of
// the copy's CPU time in that scan, for cp and rsync alike, whichever tool
// comes next. -backup dir restores that setup.
//
//	go run ./bench/reconcile -runs 3
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

var (
	flagDir    = flag.String("dir", "", "work directory (default: a temp dir, removed after)")
	flagRuns   = flag.Int("runs", 3, "runs per cell; the median is reported")
	flagFiles  = flag.Int("files", 30000, "small files per tree")
	flagLarge  = flag.Int("large", 24, "large files per tree")
	flagLargeM = flag.Int("large-mb", 8, "size of each large file, MiB")
	flagCold   = flag.Bool("cold", false, "drop the page cache before every run (root)")
	flagOnly   = flag.String("only", "", "run only the trees whose name contains this")
	flagCases  = flag.String("cases", "cold,nochange,1%", "cases to run")
	flagMeta   = flag.Bool("metadata", true, "give every third file Samba-like extended attributes and compare fidelity: rsync -aXA against syncer with and without it")
	flagLinks  = flag.Bool("hardlinks", false, "give one file in 50 a second name (a hard link) and measure hard_links: rsync -aXAH against syncer with it")
	flagBackup = flag.String("backup", "ext4", "the backup: ext4 (a fresh loop-mounted filesystem for each cold copy; root) or dir (a directory beside the source)")
)

const projects = 8

func main() {
	flag.Parse()
	dir := *flagDir
	if dir == "" {
		d, err := os.MkdirTemp("", "syncer-bench-")
		check(err)
		atExit(func() { _ = os.RemoveAll(d) })
		dir = d
	}
	bin := filepath.Join(dir, "syncer")
	run("go", "build", "-o", bin, "./cmd/syncer")
	rsyncPath = rsyncWrapper(dir)
	fmt.Printf("reconcile benchmark: %d small + %d×%d MiB files per tree, %d projects, GOMAXPROCS=%d, %d runs per cell, cold caches=%v\n\n",
		*flagFiles, *flagLarge, *flagLargeM, projects, runtime.GOMAXPROCS(0), *flagRuns, *flagCold)
	fmt.Printf("%-8s %-10s %10s %12s %12s %12s %18s %18s %14s\n", "tree", "case", "cp -a", "rsync", "rsync/proj", "syncer", "syncer/rsync", "syncer/cp", "syncer rsyncs")
	for _, skew := range []bool{false, true} {
		name := "uniform"
		if skew {
			name = "skewed"
		}
		if *flagOnly != "" && !strings.Contains(name, *flagOnly) {
			continue
		}
		src := filepath.Join(dir, name, "src")
		generate(src, skew)
		// Every tool has a backup of its own: a syncer's, which only it
		// writes, as in production (the backup NAS is syncer's: its index
		// of synced files then knows which directories are as it left
		// them), and the others' too, so that all of them can sync the
		// same changes in one round.
		backups := map[string]backup{}
		backupOf := func(t tool) backup {
			key := strings.NewReplacer(" ", "_", "/", "_").Replace(t.name)
			b, ok := backups[key]
			if !ok {
				b.dst, b.fresh = newBackup(filepath.Join(dir, name, "backup-"+key), src)
				backups[key] = b
			}
			return b
		}
		// Each syncer keeps its state dir from run to run, as the daemon
		// does (the index of synced files is in it); a cold copy starts
		// without one, as a new installation does.
		states := filepath.Join(dir, name, "state")
		state := func(tool string) string { return filepath.Join(states, strings.ReplaceAll(tool, " ", "_")) }
		syncerTool := func(name string, extra ...string) tool {
			return tool{name: name, run: func(dst string) { reconcile(bin, state(name), src, dst, extra...) }, syncer: true}
		}
		tools := []tool{
			{name: "cp -a", run: func(dst string) { run("cp", "-a", src+"/.", dst) }, coldOnly: true},
			{name: "rsync", run: func(dst string) { run("rsync", "-a", "--delete", keepTrash, src+"/", dst+"/") }},
			{name: "rsync/proj", run: func(dst string) { perProject(src, dst) }},
			syncerTool("syncer"),
			// Every backup entry read, as one reconcile every
			// deep_reconcile_interval does.
			syncerTool("syncer --deep", "--deep"),
		}
		if *flagMeta {
			tools = append(tools,
				tool{name: "rsync -aXA", run: func(dst string) { run("rsync", "-aXA", "--delete", keepTrash, src+"/", dst+"/") }},
				syncerTool("syncer -meta", "--xattrs=false", "--acls=false", "--sparse=false"))
		}
		if *flagLinks {
			tools = append(tools,
				tool{name: "rsync -aXAH", run: func(dst string) { run("rsync", "-aXAH", "--delete", keepTrash, src+"/", dst+"/") }},
				syncerTool("syncer -H", "--hard-links"))
		}
		for _, c := range strings.Split(*flagCases, ",") {
			var active []tool
			for _, t := range tools {
				if !t.coldOnly || c == "cold" {
					active = append(active, t)
				}
			}
			runs := map[string][]time.Duration{}
			rsyncs := 0 // by the syncer runs of the cell
			// Rounds, not one tool's runs after another's: this machine's
			// speed drifts within minutes, and a ratio is only fair
			// between runs made side by side. In each round every tool
			// syncs the same changes, in an order that rotates.
			for r := range *flagRuns {
				for _, t := range active {
					b := backupOf(t)
					switch {
					case c == "cold":
						b.fresh()
						check(os.RemoveAll(state(t.name)))
					case t.syncer:
						// A syncer's backup catches up on the last round's
						// changes by a reconcile of its own, untimed.
						t.run(b.dst)
						rsyncRuns()
					default:
						ensureSynced(src, b.dst)
					}
				}
				if c == "1%" {
					mutate(src, 0.01)
				}
				for i := range active {
					t := active[(i+r)%len(active)]
					dst := backupOf(t).dst
					// Start every run from clean page cache state: the
					// previous run's dirty pages must not slow this one.
					run("sync")
					dropCaches()
					start := time.Now()
					t.run(dst)
					if c == "cold" {
						// A backup is done when it is on disk: every tool
						// pays for its own writeback, not the next one.
						run("sync")
					}
					runs[t.name] = append(runs[t.name], time.Since(start))
					if n := rsyncRuns(); t.name == "syncer" {
						rsyncs += n
					}
					verify(src, dst, t.name, c)
				}
			}
			times := map[string]time.Duration{}
			for name, ds := range runs {
				times[name] = median(slices.Clone(ds))
			}
			// ratio is the median of a's time over b's, round by round.
			ratio := func(a, b string) float64 {
				var rs []float64
				for i := range runs[a] {
					rs = append(rs, runs[a][i].Seconds()/runs[b][i].Seconds())
				}
				slices.Sort(rs)
				return rs[len(rs)/2]
			}
			cp := "-"
			if v, ok := times["cp -a"]; ok {
				cp = fmtDur(v)
			}
			ratioCp := "-"
			if _, ok := times["cp -a"]; ok {
				ratioCp = fmt.Sprintf("%.2fx", ratio("syncer", "cp -a"))
			}
			fmt.Printf("%-8s %-10s %10s %12s %12s %12s %18s %18s %14s\n", name, c, cp, fmtDur(times["rsync"]), fmtDur(times["rsync/proj"]),
				fmtDur(times["syncer"]), fmt.Sprintf("%.2fx", ratio("syncer", "rsync")), ratioCp,
				fmt.Sprintf("%d in %d", rsyncs, *flagRuns))
			fmt.Printf("%-8s %-10s deep (every backup entry read): syncer --deep %s: %.2fx rsync\n", "", "",
				fmtDur(times["syncer --deep"]), ratio("syncer --deep", "rsync"))
			if *flagMeta {
				fmt.Printf("%-8s %-10s fidelity: rsync -aXA %s, syncer without metadata %s: syncer/rsync -aXA %.2fx, cost of fidelity %+.0f%%\n",
					"", "", fmtDur(times["rsync -aXA"]), fmtDur(times["syncer -meta"]),
					ratio("syncer", "rsync -aXA"), 100*(ratio("syncer", "syncer -meta")-1))
			}
			if *flagLinks {
				fmt.Printf("%-8s %-10s hard links: rsync -aXAH %s, syncer -H %s: syncer -H/rsync -aXAH %.2fx, cost of -H %+.0f%%\n",
					"", "", fmtDur(times["rsync -aXAH"]), fmtDur(times["syncer -H"]),
					ratio("syncer -H", "rsync -aXAH"), 100*(ratio("syncer -H", "syncer")-1))
			}
		}
	}
	exit(0)
}

// keepTrash keeps the other tools' rsync --delete away from syncer's
// trash: what syncer deleted or replaced, kept by default.
const keepTrash = "--exclude=/.syncer-trash"

// rsyncCount is the file the wrapper rsyncPath counts syncer's rsync
// processes in.
var rsyncCount, rsyncPath string

// rsyncWrapper writes, in dir, a script that counts its runs and execs rsync.
func rsyncWrapper(dir string) string {
	real, err := exec.LookPath("rsync")
	check(err)
	rsyncCount = filepath.Join(dir, "rsync-runs")
	w := filepath.Join(dir, "rsync-counting")
	// A version probe (rsync --version, at start) is not a sync: not counted.
	check(os.WriteFile(w, []byte("#!/bin/sh\n[ \"$1\" = --version ] || echo >> "+rsyncCount+"\nexec "+real+" \"$@\"\n"), 0o755))
	return w
}

// rsyncRuns reads and resets the count of rsync processes syncer started.
func rsyncRuns() int {
	b, _ := os.ReadFile(rsyncCount)
	_ = os.Remove(rsyncCount)
	return strings.Count(string(b), "\n")
}

// reconcile runs one standalone syncer reconcile of src into dst, with
// state in the directory state, with syncer's defaults (its trash on).
func reconcile(bin, state, src, dst string, extra ...string) {
	run(bin, append([]string{"reconcile", "--source", src, "--dest", dst, "--state-dir", state,
		"--rsync-path", rsyncPath, "--log-level", "error", "--json"}, extra...)...)
}

// newBackup prepares an empty backup in dir for the tree src and returns
// its root, and what empties it for a cold copy.
func newBackup(dir, src string) (dst string, fresh func()) {
	switch *flagBackup {
	case "dir":
		dst = filepath.Join(dir, "dst")
		fresh = func() {
			check(os.RemoveAll(dst))
			check(os.MkdirAll(dst, 0o755))
		}
		fresh()
		return dst, fresh
	case "ext4":
		if os.Geteuid() != 0 {
			check(fmt.Errorf("-backup ext4 loop-mounts a filesystem: run as root, or with -backup dir"))
		}
	default:
		check(fmt.Errorf("-backup %q: want ext4 or dir", *flagBackup))
	}
	size := int64(256 << 20)
	check(filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, err := d.Info()
			if err == nil {
				size += fi.Size() + 4096
			}
		}
		return err
	}))
	size += size / 2
	// The backup root is a directory on that filesystem, not its root
	// (which holds lost+found).
	img, mnt := filepath.Join(dir, "backup.img"), filepath.Join(dir, "backup")
	dst = filepath.Join(mnt, "dst")
	check(os.MkdirAll(mnt, 0o755))
	unmount := func() { _ = exec.Command("umount", mnt).Run() }
	atExit(func() { unmount(); _ = os.Remove(img) })
	fresh = func() {
		unmount()
		check(os.RemoveAll(img))
		f, err := os.Create(img)
		check(err)
		check(f.Truncate(size))
		check(f.Close())
		// Inode tables and journal written now, not by a background
		// thread during the timed copy.
		run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
		run("mount", "-o", "loop", img, mnt)
		check(os.Mkdir(dst, 0o755))
	}
	fresh()
	return dst, fresh
}

var cleanups []func()

// atExit runs fn when the program ends, however it ends.
func atExit(fn func()) { cleanups = append(cleanups, fn) }

func exit(code int) {
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	os.Exit(code)
}

type tool struct {
	name     string
	run      func(dst string)
	coldOnly bool
	syncer   bool
}

// backup is a tool's backup: its root, and what empties it for a cold copy.
type backup struct {
	dst   string
	fresh func()
}

// generate writes a media-like tree: per project, shots of small sidecar
// and frame files plus a few large media files. With skew, project p0
// holds 80% of the bytes.
func generate(root string, skew bool) {
	check(os.RemoveAll(root))
	rng := rand.New(rand.NewPCG(42, 7))
	for i := range *flagFiles {
		p := i % projects
		d := filepath.Join(root, fmt.Sprintf("p%d/shot%03d/frames%d", p, (i/projects)%40, (i/(projects*40))%4))
		check(os.MkdirAll(d, 0o755))
		size := 512 + rng.IntN(8<<10)
		f := filepath.Join(d, fmt.Sprintf("f%06d.dpx", i))
		check(os.WriteFile(f, randBytes(rng, size), 0o644))
		if *flagMeta && i%3 == 0 {
			check(unix.Setxattr(f, "user.DosStream.AFP_AfpInfo:$DATA", randBytes(rng, 32), 0))
			check(unix.Setxattr(f, "user.DOSATTRIB", randBytes(rng, 24), 0))
		}
		if *flagLinks && i%50 == 1 {
			check(os.Link(f, strings.TrimSuffix(f, ".dpx")+".take2.dpx"))
		}
	}
	for i := range *flagLarge {
		p := i % projects
		if skew {
			// 80% of the large bytes to p0.
			if i < *flagLarge*4/5 {
				p = 0
			} else {
				p = 1 + i%(projects-1)
			}
		}
		d := filepath.Join(root, fmt.Sprintf("p%d/media/cam%d", p, i%3))
		check(os.MkdirAll(d, 0o755))
		check(os.WriteFile(filepath.Join(d, fmt.Sprintf("clip%03d.mov", i)), randBytes(rng, *flagLargeM<<20), 0o644))
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// mutate changes a fraction of the regular files as a working day does: edits
// in place, appends, new files, deletes, renames and moves between directories.
func mutate(root string, frac float64) {
	var files []string
	check(filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	}))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	n := max(1, int(float64(len(files))*frac))
	for k, i := range rng.Perm(len(files))[:n] {
		f := files[i]
		// What a day on the share does: edits, appends, new files, deletes,
		// renames within a directory and moves to another shot.
		switch k % 10 {
		case 0, 1, 2, 3: // edit in place: rewrite the head (large files: 64 KiB of it)
			fi, err := os.Stat(f)
			check(err)
			w, err := os.OpenFile(f, os.O_WRONLY, 0)
			check(err)
			_, err = w.Write(randBytes(rng, int(min(fi.Size(), 64<<10))))
			check(err)
			check(w.Close())
		case 4: // append
			w, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
			check(err)
			_, err = w.Write(randBytes(rng, 4<<10))
			check(err)
			check(w.Close())
		case 5, 6: // a new file beside it
			check(os.WriteFile(fmt.Sprintf("%s.new%d.dpx", f, rng.Uint32()), randBytes(rng, 512+rng.IntN(8<<10)), 0o644))
		case 7: // delete
			check(os.Remove(f))
		case 8: // rename in its directory
			check(os.Rename(f, fmt.Sprintf("%s.r%d.dpx", f, rng.Uint32())))
		case 9: // move to another file's directory
			to := filepath.Dir(files[rng.IntN(len(files))])
			if _, err := os.Stat(to); err == nil {
				check(os.Rename(f, filepath.Join(to, fmt.Sprintf("moved%d-%s", rng.Uint32(), filepath.Base(f)))))
			}
		}
	}
}

func perProject(src, dst string) {
	ents, err := os.ReadDir(src)
	check(err)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for _, e := range ents {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			run("rsync", "-a", "--delete", filepath.Join(src, e.Name())+"/", filepath.Join(dst, e.Name())+"/")
		}()
	}
	wg.Wait()
}

// ensureSynced makes dst equal to src to the nanosecond (plain rsync -a
// leaves sub-second directory time differences, which a nanosecond compare
// would then count as changes).
func ensureSynced(src, dst string) {
	check(os.MkdirAll(dst, 0o755))
	flags := "-aXA"
	if *flagLinks {
		flags += "H"
	}
	run("rsync", flags, "--delete", "--modify-window=-1", keepTrash, src+"/", dst+"/")
}

// verify fails loudly unless the backup equals the source.
func verify(src, dst, tool, c string) {
	out, err := exec.Command("rsync", "-a", "--delete", "--dry-run", "--itemize-changes", "--checksum", "--modify-window=-1",
		keepTrash, src+"/", dst+"/").CombinedOutput()
	check(err)
	var diffs []string
	for _, l := range strings.Split(string(out), "\n") {
		// Directory times count for syncer, the root's too. The others
		// leave them: rsync -a sets a directory's time before the
		// sub-second part settles (see ensureSynced), cp -a the root's.
		if l != "" && !(!strings.HasPrefix(tool, "syncer") && strings.HasPrefix(l, ".d..t")) {
			diffs = append(diffs, l)
		}
	}
	if len(diffs) == 0 {
		return
	}
	if !strings.HasPrefix(tool, "syncer") {
		// What users pick instead misses some changes (rsync's quick check
		// skips a same-size rewrite within the mtime's second): reported,
		// and the backup made equal so that the next run starts even.
		fmt.Fprintf(os.Stderr, "MISSED: %s (%s) left %d entries different from the source (first: %s)\n", tool, c, len(diffs), diffs[0])
		out, err := exec.Command("rsync", "-a", "--delete", "--checksum", "--modify-window=-1", keepTrash, src+"/", dst+"/").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "repair: %v %s\n", err, out)
			exit(1)
		}
		return
	}
	fmt.Fprintf(os.Stderr, "FAIL: %s (%s) left the backup different from the source:\n%s\n", tool, c, strings.Join(diffs[:min(len(diffs), 20)], "\n"))
	exit(1)
}

func dropCaches() {
	if !*flagCold {
		return
	}
	check(os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o644))
}

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
		exit(1)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		exit(1)
	}
}

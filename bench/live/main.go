// Command live measures syncer against lsyncd, one after the other on the
// same workloads on this machine: replication lag under a steady writer,
// an event storm, the footprint of watching a large tree, and large-file
// throughput against cp. Every run ends with a full equality check of source
// and backup; a difference fails the benchmark.
//
//	go run ./bench/live [-cases lag,storm,footprint,throughput] [-tools syncer,lsyncd-1s,lsyncd]
//
// It needs root only to install lsyncd when it is missing (make bench does).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer/internal/testutil"
)

var (
	cases = flag.String("cases", "lag,storm,footprint,unrelated,throughput,rename", "what to measure")
	tools = flag.String("tools", "syncer-fanotify,syncer-inotify,lsyncd-1s,lsyncd",
		"who to measure: syncer (watcher auto), syncer-fanotify, syncer-inotify, lsyncd-1s (delay 1 s), lsyncd (its defaults)")
	rates     = flag.String("rates", "100,500,2000", "steady writer rates, changes per second")
	lagFor    = flag.Duration("lag-duration", 10*time.Second, "how long the steady writer writes at each rate")
	storm     = flag.Int("storm-files", 50000, "files of the storm")
	dirs      = flag.String("footprint-dirs", "100000,1000000", "directories of the footprint trees")
	lsyncMax  = flag.Int("lsyncd-max-dirs", 100000, "largest footprint tree lsyncd is run on")
	unrelRate = flag.Int("unrelated-rate", 5000, "files/s an unrelated writer creates outside the source, on its filesystem")
	idleFor   = flag.Duration("idle", 30*time.Second, "idle CPU sampling time")
	bigGB     = flag.Float64("throughput-gb", 3, "GiB of large files for the throughput case")
	writerIn  = flag.String("writer", "memory", "where the throughput writer reads its files: memory (page cache) or disk (clean cache)")
	bigRuns   = flag.Int("throughput-runs", 3, "rounds of the throughput case; the median of each round's ratio is reported")
	bigTools  = flag.String("throughput-tools", "syncer,syncer-nometa,lsyncd-1s,lsyncd,lsyncd-XA",
		"who to measure in the throughput case; the files carry Samba-like xattrs and an ACL, kept by syncer and lsyncd-XA (rsync -XA), dropped by syncer-nometa and lsyncd")
	renTools = flag.String("rename-tools", "syncer,lsyncd-1s,lsyncd-ssh",
		"who to measure in the rename case; lsyncd-ssh is lsyncd's rsync-over-ssh mode (moves as mv on the target), through an sshd of its own on 127.0.0.1")
	renGB = flag.Float64("rename-gb", 2, "GiB of the folder renamed (200 files)")
	keep  = flag.Bool("keep", false, "keep the work directory")
	extra = flag.String("syncer-args", "", "extra syncer run flags, space-separated (the targets are for the defaults)")
)

func main() {
	flag.Parse()
	if *writerIn != "memory" && *writerIn != "disk" {
		fail("-writer must be memory or disk, not %q", *writerIn)
	}
	for _, need := range []string{"rsync", "lsyncd"} {
		if _, err := exec.LookPath(need); err != nil {
			fail("%s is not installed (Debian: apt-get install %s; make bench installs it)", need, need)
		}
	}
	work, err := os.MkdirTemp("", "syncer-bench-live-")
	check(err)
	if !*keep {
		defer os.RemoveAll(work)
	}
	syncerBin, err := build(work)
	check(err)
	b := &bench{syncer: syncerBin, work: work}
	fmt.Printf("# syncer live benchmark, %s, %d cores\n\n", time.Now().Format(time.DateTime), numCPU())
	for _, c := range strings.Split(*cases, ",") {
		switch c {
		case "lag":
			b.lag()
		case "storm":
			b.storm()
		case "footprint":
			for _, n := range strings.Split(*dirs, ",") {
				d, err := strconv.Atoi(n)
				check(err)
				b.footprint(d)
			}
		case "unrelated":
			b.unrelated()
		case "throughput":
			b.throughput()
		case "rename":
			b.rename()
		default:
			fail("unknown case %q", c)
		}
	}
	if failed {
		fail("FAILED: a run ended with changes missing or the backup not equal to the source (see the table)")
	}
}

type bench struct {
	syncer string
	work   string
	n      int
	ssh    struct {
		port int
		key  string
		cmd  *exec.Cmd
	}
}

// tree makes a fresh source and backup pair.
func (b *bench) tree() (src, dst string) {
	b.n++
	src, dst = filepath.Join(b.work, fmt.Sprint(b.n), "prod"), filepath.Join(b.work, fmt.Sprint(b.n), "backup")
	check(os.MkdirAll(src, 0o755))
	check(os.MkdirAll(dst, 0o755))
	return src, dst
}

// done removes a tree made by tree once its case is measured (unless
// -keep), so trees do not pile up: a full run makes over 300,000
// directories.
func (b *bench) done(src string) {
	if !*keep {
		check(os.RemoveAll(filepath.Dir(src)))
	}
}

// daemon is a running replicator under test.
type daemon struct {
	name  string
	cmd   *exec.Cmd
	runs  string // file with one line per rsync started
	log   string
	ready time.Duration
}

// start runs tool on src → dst through an rsync wrapper that counts runs,
// and waits until its startup sync is done.
func (b *bench) start(tool, src, dst string) *daemon {
	dir := filepath.Join(filepath.Dir(src), tool)
	check(os.MkdirAll(dir, 0o755))
	d := &daemon{name: tool, runs: filepath.Join(dir, "runs"), log: filepath.Join(dir, "log")}
	rsync, _ := exec.LookPath("rsync")
	wrapper := filepath.Join(dir, "rsync")
	check(os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\necho >> %q\nexec %q \"$@\"\n", d.runs, rsync)), 0o755))
	logf, err := os.Create(d.log)
	check(err)
	var readyLine string
	switch tool {
	case "syncer", "syncer-nometa", "syncer-fanotify", "syncer-inotify":
		args := []string{"run", "--source", src, "--dest", dst, "--state-dir", filepath.Join(dir, "state"),
			"--rsync-path", wrapper, "--log-format", "json", "--listen", "", "--diagnose-interval", "0"}
		switch tool {
		case "syncer-nometa":
			args = append(args, "--xattrs=false", "--acls=false", "--sparse=false")
		case "syncer-fanotify", "syncer-inotify":
			args = append(args, "--watcher", strings.TrimPrefix(tool, "syncer-"))
		}
		d.cmd = exec.Command(b.syncer, append(args, strings.Fields(*extra)...)...)
		readyLine = `"msg":"reconcile done"`
	case "lsyncd-ssh":
		conf := filepath.Join(dir, "lsyncd.conf")
		check(os.WriteFile(conf, []byte(fmt.Sprintf(`settings { nodaemon = true, logfile = %q, insist = true }
sync { default.rsyncssh, source = %q, host = "root@127.0.0.1", targetdir = %q, delay = 1,
  rsync = { binary = %q, archive = true },
  ssh = { port = %d, identityFile = %q, options = { StrictHostKeyChecking = "no", UserKnownHostsFile = "/dev/null" } } }
`, d.log+".lsyncd", src, dst, wrapper, b.ssh.port, b.ssh.key)), 0o644))
		d.cmd = exec.Command("lsyncd", conf)
		readyLine = "Startup of"
	case "lsyncd", "lsyncd-1s", "lsyncd-XA":
		delay, meta := "", ""
		if tool == "lsyncd-1s" {
			delay = "delay = 1,"
		}
		if tool == "lsyncd-XA" {
			meta = "xattrs = true, acls = true,"
		}
		conf := filepath.Join(dir, "lsyncd.conf")
		check(os.WriteFile(conf, []byte(fmt.Sprintf(`settings { nodaemon = true, logfile = %q, insist = true }
sync { default.rsync, source = %q, target = %q, %s rsync = { binary = %q, archive = true, %s } }
`, d.log+".lsyncd", src, dst, delay, wrapper, meta)), 0o644))
		d.cmd = exec.Command("lsyncd", conf)
		readyLine = "Startup of"
	default:
		fail("unknown tool %q", tool)
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	t0 := time.Now()
	check(d.cmd.Start())
	deadline := time.Now().Add(10 * time.Minute)
	for !d.logged(readyLine) {
		if time.Now().After(deadline) {
			fail("%s not ready after 10 min; log %s", tool, d.log)
		}
		if d.cmd.ProcessState != nil {
			fail("%s exited; log %s", tool, d.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.ready = time.Since(t0)
	return d
}

func (d *daemon) logged(s string) bool {
	for _, f := range []string{d.log, d.log + ".lsyncd"} {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(s)) {
			if s == "Startup of" {
				return bytes.Contains(b, []byte("finished"))
			}
			return true
		}
	}
	return false
}

func (d *daemon) rsyncs() int {
	b, _ := os.ReadFile(d.runs)
	return bytes.Count(b, []byte("\n"))
}

// peakRSS is the process's high-water resident memory in MiB.
func (d *daemon) peakRSS() float64 { return procStatus(d.cmd.Process.Pid, "VmHWM:") / 1024 }
func (d *daemon) rss() float64     { return procStatus(d.cmd.Process.Pid, "VmRSS:") / 1024 }

// cpu is the process's user+system CPU time so far.
func (d *daemon) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	check(err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / 100 // USER_HZ
}

func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
}

// ---- steady lag ------------------------------------------------------------

// op is one change of the steady writer and what the backup must show for it.
type op struct {
	at      time.Time
	path    string // must hold version ver or later ("" when only gone matters)
	ver     int
	gone    string // must not exist
	seen    time.Duration
	pending bool
	// superseded: renamed away or deleted before it could be seen.
	superseded bool
}

func (b *bench) lag() {
	fmt.Println("## Steady lag: time until each change is on the backup")
	fmt.Println()
	fmt.Println("| tool | rate/s | changes | p50 | p95 | p99 | max | rsyncs | converged |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, rs := range strings.Split(*rates, ",") {
		rate, err := strconv.Atoi(rs)
		check(err)
		for _, tool := range strings.Split(*tools, ",") {
			src, dst := b.tree()
			// A modest existing tree: 8 projects × 10 directories.
			for p := range 8 {
				for d := range 10 {
					check(os.MkdirAll(filepath.Join(src, fmt.Sprintf("p%d/d%d", p, d)), 0o755))
				}
			}
			dm := b.start(tool, src, dst)
			ops := steadyWriter(src, dst, rate, *lagFor)
			converged := waitEqual(src, dst, time.Minute)
			dm.stop()
			var lags []time.Duration
			missed := 0
			for _, o := range ops {
				switch {
				case o.superseded:
				case o.pending:
					missed++
				default:
					lags = append(lags, o.seen)
				}
			}
			slices.Sort(lags)
			status := "yes"
			if missed > 0 || converged != nil {
				status = fmt.Sprintf("**NO**: %d changes never seen; %v", missed, converged)
			}
			fmt.Printf("| %s | %d | %d | %s | %s | %s | %s | %d | %s |\n", tool, rate, len(ops),
				pct(lags, 50), pct(lags, 95), pct(lags, 99), pct(lags, 100), dm.rsyncs(), status)
			if status != "yes" {
				recordDiff(tool)
			}
			b.done(src)
		}
	}
	fmt.Println()
}

// failed is set when syncer ends a run with the backup not equal to the
// source; the run then exits non-zero. The others' failures are findings,
// shown in the table.
var failed bool

func recordDiff(tool string) {
	if strings.HasPrefix(tool, "syncer") {
		failed = true
	}
}

// steadyWriter changes src at rate changes/s for dur (creates in new and
// existing directories, overwrites, renames, deletes) while a checker polls
// dst; it returns every change with its lag. It waits up to 60 s after the
// last write for stragglers.
func steadyWriter(src, dst string, rate int, dur time.Duration) []*op {
	rng := rand.New(rand.NewPCG(1, uint64(rate)))
	var ops []*op
	var live []string // files that exist, relative
	ver := map[string]int{}
	dirs := []string{}
	for p := range 8 {
		for d := range 10 {
			dirs = append(dirs, fmt.Sprintf("p%d/d%d", p, d))
		}
	}
	write := func(rel string) {
		ver[rel]++
		content := fmt.Sprintf("%d\n%s", ver[rel], strings.Repeat("x", 200+rng.IntN(2000)))
		check(os.WriteFile(filepath.Join(src, rel), []byte(content), 0o644))
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	n := 0
	checkerDone := make(chan struct{})
	opsCh := make(chan *op, 1<<16)
	go checker(dst, opsCh, checkerDone)
	for time.Since(start) < dur {
		next := start.Add(time.Duration(n) * interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		n++
		o := &op{at: time.Now(), pending: true}
		switch r := rng.IntN(100); {
		case r < 5: // a new subdirectory with a file
			d := fmt.Sprintf("%s/n%d", dirs[rng.IntN(len(dirs))], n)
			check(os.Mkdir(filepath.Join(src, d), 0o755))
			dirs = append(dirs, d)
			rel := d + "/f" + strconv.Itoa(n)
			write(rel)
			live = append(live, rel)
			o.path, o.ver = rel, ver[rel]
		case r < 15 && len(live) > 10: // overwrite
			rel := live[rng.IntN(len(live))]
			write(rel)
			o.path, o.ver = rel, ver[rel]
		case r < 20 && len(live) > 10: // rename within or across directories
			i := rng.IntN(len(live))
			old := live[i]
			rel := dirs[rng.IntN(len(dirs))] + "/r" + strconv.Itoa(n)
			check(os.Rename(filepath.Join(src, old), filepath.Join(src, rel)))
			ver[rel] = ver[old]
			live[i] = rel
			o.path, o.ver, o.gone = rel, ver[rel], old
		case r < 25 && len(live) > 10: // delete
			i := rng.IntN(len(live))
			old := live[i]
			check(os.Remove(filepath.Join(src, old)))
			live = slices.Delete(live, i, i+1)
			o.gone = old
		default: // create
			rel := dirs[rng.IntN(len(dirs))] + "/f" + strconv.Itoa(n)
			write(rel)
			live = append(live, rel)
			o.path, o.ver = rel, ver[rel]
		}
		ops = append(ops, o)
		opsCh <- o
	}
	close(opsCh)
	<-checkerDone
	return ops
}

// checker watches the backup with inotify and checks a pending change as
// soon as its path changes there, with a
// full poll every 100 ms as a safety net. Polling every change every few
// milliseconds instead costs more CPU than the replicators under test at
// 500 changes/s. It returns once every change is seen, or 60 s after the
// last one arrived.
func checker(dst string, in <-chan *op, done chan<- struct{}) {
	defer close(done)
	w, err := fsnotify.NewWatcher()
	check(err)
	defer w.Close()
	watch := func(dir string) {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = w.Add(p)
			}
			return nil
		})
	}
	watch(dst)
	byPath := map[string][]*op{} // pending changes by the backup path they wait on
	pending := 0
	add := func(o *op) {
		if o.gone != "" {
			// Changes still waiting on a name that is now gone can never
			// be seen: superseded, not missed.
			for _, e := range byPath[filepath.Join(dst, o.gone)] {
				if e.pending && e.path == o.gone {
					e.pending, e.superseded = false, true
					pending--
				}
			}
		}
		for _, p := range []string{o.path, o.gone} {
			if p != "" {
				k := filepath.Join(dst, p)
				byPath[k] = append(byPath[k], o)
			}
		}
		pending++
	}
	try := func(path string, now time.Time) {
		ops := byPath[path]
		kept := ops[:0]
		for _, o := range ops {
			if o.pending && satisfied(dst, o) {
				o.seen, o.pending = now.Sub(o.at), false
				pending--
			}
			if o.pending {
				kept = append(kept, o)
			}
		}
		if len(kept) == 0 {
			delete(byPath, path)
		} else {
			byPath[path] = kept
		}
	}
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	var last time.Time
	for {
		select {
		case o, ok := <-in:
			if !ok {
				in = nil
				last = time.Now()
				break
			}
			add(o)
			last = time.Now()
			// It may be there already (a fast replicator).
			for _, p := range []string{o.path, o.gone} {
				if p != "" {
					try(filepath.Join(dst, p), time.Now())
				}
			}
		case ev := <-w.Events:
			now := time.Now()
			if ev.Op&fsnotify.Create != 0 {
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					watch(ev.Name)
					// Everything below a new directory may be complete already.
					for p := range byPath {
						if strings.HasPrefix(p, ev.Name+"/") {
							try(p, now)
						}
					}
				}
			}
			try(ev.Name, now)
		case <-w.Errors:
		case <-poll.C:
			now := time.Now()
			for p := range byPath {
				try(p, now)
			}
		}
		if in == nil && (pending == 0 || time.Since(last) > 60*time.Second) {
			return
		}
	}
}

func satisfied(dst string, o *op) bool {
	if o.gone != "" {
		if _, err := os.Lstat(filepath.Join(dst, o.gone)); err == nil {
			return false
		}
	}
	if o.path == "" {
		return true
	}
	f, err := os.Open(filepath.Join(dst, o.path))
	if err != nil {
		return false
	}
	defer f.Close()
	var buf [24]byte
	n, _ := f.Read(buf[:])
	line, _, ok := strings.Cut(string(buf[:n]), "\n")
	if !ok {
		return false
	}
	v, err := strconv.Atoi(line)
	return err == nil && v >= o.ver
}

func pct(s []time.Duration, p int) string {
	if len(s) == 0 {
		return "–"
	}
	i := min(len(s)*p/100, len(s)-1)
	return fmt.Sprintf("%.3f s", s[i].Seconds())
}

// ---- storm -----------------------------------------------------------------

func (b *bench) storm() {
	fmt.Printf("## Storm: %d small files created as fast as possible in one project\n\n", *storm)
	fmt.Println("| tool | write time | converged after last write | one `rsync -a` of the project | ratio | rsyncs | files per rsync | peak RSS |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, tool := range strings.Split(*tools, ",") {
		src, dst := b.tree()
		check(os.MkdirAll(filepath.Join(src, "p0"), 0o755))
		check(os.MkdirAll(filepath.Join(src, "p1/old"), 0o755))
		dm := b.start(tool, src, dst)
		before := dm.rsyncs()
		t0 := time.Now()
		per := 1000
		for i := range *storm {
			if i%per == 0 {
				check(os.Mkdir(filepath.Join(src, fmt.Sprintf("p0/d%03d", i/per)), 0o755))
			}
			check(os.WriteFile(filepath.Join(src, fmt.Sprintf("p0/d%03d/f%05d", i/per, i)), []byte(strconv.Itoa(i)), 0o644))
		}
		wrote := time.Since(t0)
		last := time.Now()
		conv := waitEqual(src, dst, 10*time.Minute)
		after := time.Since(last)
		runs := dm.rsyncs() - before
		peak := dm.peakRSS()
		dm.stop()
		// The reference: one rsync of the project into an empty directory.
		ref := filepath.Join(filepath.Dir(src), "ref")
		t1 := time.Now()
		run("rsync", "-a", src+"/p0/", ref+"/")
		rs := time.Since(t1)
		res := fmt.Sprintf("%.2f s", after.Seconds())
		if conv != nil {
			res = "**NOT EQUAL**: " + conv.Error()
			recordDiff(tool)
		}
		fmt.Printf("| %s | %.2f s | %s | %.2f s | %.2f× | %d | %d | %.1f MiB |\n", tool, wrote.Seconds(), res, rs.Seconds(),
			after.Seconds()/rs.Seconds(), runs, *storm/max(runs, 1), peak)
		b.done(src)
	}
	fmt.Println()
}

// ---- footprint -------------------------------------------------------------

// footprint starts each tool on a tree of n directories whose backup is
// equal already: start-up until the startup sync is done, memory (the
// process's, and the kernel's for the watches), idle CPU. inotify needs a
// watch per directory: fs.inotify.max_user_watches is raised for it when
// the tree has more, and restored after.
func (b *bench) footprint(n int) {
	fmt.Printf("## Footprint: %d directories\n\n", n)
	fmt.Printf("| tool | startup until synced | RSS idle | kernel watch memory | CPU over %s idle |\n", *idleFor)
	fmt.Println("|---|---|---|---|---|")
	src, dst := b.tree()
	for i := range n {
		check(os.MkdirAll(filepath.Join(src, fmt.Sprintf("p%02d/g%03d/d%d", i%20, (i/20)%100, i)), 0o755))
	}
	// The backup holds the tree, to the nanosecond (plain rsync -a leaves
	// sub-second directory mtimes behind): measure watching, not copying.
	run("rsync", "-a", "--modify-window=-1", src+"/", dst+"/")
	const knob = "/proc/sys/fs/inotify/max_user_watches"
	old, err := os.ReadFile(knob)
	check(err)
	if limit, _ := strconv.Atoi(strings.TrimSpace(string(old))); limit < n+n/10+10000 {
		check(os.WriteFile(knob, []byte(fmt.Sprint(n+n/10+10000)), 0o644))
		defer func() { _ = os.WriteFile(knob, old, 0o644) }()
	}
	for _, tool := range strings.Split(*tools, ",") {
		if strings.HasPrefix(tool, "lsyncd") && n > *lsyncMax {
			continue
		}
		run("sync")
		dropCaches()
		k0 := watchSlab()
		dm := b.start(tool, src, dst)
		time.Sleep(3 * time.Second) // settle
		kernel := watchSlab() - k0
		c0 := dm.cpu()
		time.Sleep(*idleFor)
		idle := dm.cpu() - c0
		rss := dm.rss()
		// Still alive and watching: a write arrives.
		check(os.WriteFile(filepath.Join(src, "p00/g000/d0/probe"), []byte(tool), 0o644))
		err := waitEqual(src, dst, 2*time.Minute)
		dm.stop()
		if err != nil {
			recordDiff(tool)
			fmt.Printf("| %s | **NOT EQUAL**: %v | | | |\n", tool, err)
			continue
		}
		check(os.Remove(filepath.Join(src, "p00/g000/d0/probe")))
		run("rsync", "-a", "--delete", "--modify-window=-1", src+"/", dst+"/")
		fmt.Printf("| %s | %.2f s | %.1f MiB | %.1f MiB | %.2f%% |\n", tool, dm.ready.Seconds(), rss, kernel,
			100*idle.Seconds()/idleFor.Seconds())
	}
	b.done(src)
	fmt.Println()
}

// watchSlab is the kernel memory, in MiB, of the objects inotify and
// fanotify marks take (/sys/kernel/slab: inotify_inode_mark,
// fanotify_mark, fsnotify_mark_connector; /proc/slabinfo does not list
// caches merged into others). A merged cache counts its other objects
// too: the difference across a start is what the tool added.
func watchSlab() float64 {
	var total float64
	for _, c := range []string{"inotify_inode_mark", "fanotify_mark", "fsnotify_mark_connector"} {
		objs, err1 := os.ReadFile(filepath.Join("/sys/kernel/slab", c, "objects"))
		size, err2 := os.ReadFile(filepath.Join("/sys/kernel/slab", c, "slab_size"))
		if err1 != nil || err2 != nil {
			continue
		}
		n, _ := strconv.ParseFloat(strings.Fields(string(objs))[0], 64)
		sz, _ := strconv.ParseFloat(strings.TrimSpace(string(size)), 64)
		total += n * sz
	}
	return total / (1 << 20)
}

// unrelated runs each tool on a small tree while another writer creates
// files outside the source, on the same filesystem, at -unrelated-rate per
// second: a fanotify mark on the filesystem sees them all and must drop
// them cheaply. It reports the tool's CPU meanwhile, and what it synced.
func (b *bench) unrelated() {
	fmt.Printf("## Unrelated writer: %d files/s created outside the source, on its filesystem\n\n", *unrelRate)
	fmt.Println("| tool | writer files | tool CPU meanwhile | rsyncs |")
	fmt.Println("|---|---|---|---|")
	for _, tool := range strings.Split(*tools, ",") {
		src, dst := b.tree()
		for p := range 8 {
			check(os.MkdirAll(filepath.Join(src, fmt.Sprintf("p%d/d0", p)), 0o755))
		}
		other := filepath.Join(filepath.Dir(src), "other")
		check(os.MkdirAll(other, 0o755))
		dm := b.start(tool, src, dst)
		time.Sleep(2 * time.Second)
		c0, r0 := dm.cpu(), dm.rsyncs()
		const dur = 10 * time.Second
		t0 := time.Now()
		n := 0
		for time.Since(t0) < dur {
			// Paced in 10 ms steps; every file written, closed, and the
			// ones a second old removed, as a render's scratch would.
			due := int(time.Since(t0).Seconds() * float64(*unrelRate))
			for ; n < due; n++ {
				d := filepath.Join(other, fmt.Sprint(n/1000))
				if n%1000 == 0 {
					check(os.MkdirAll(d, 0o755))
				}
				check(os.WriteFile(filepath.Join(d, fmt.Sprint(n)), []byte("scratch"), 0o644))
				if old := n - *unrelRate; old >= 0 && old%1000 == 999 {
					check(os.RemoveAll(filepath.Join(other, fmt.Sprint(old/1000))))
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		cpu := dm.cpu() - c0
		err := waitEqual(src, dst, time.Minute)
		rsyncs := dm.rsyncs() - r0
		dm.stop()
		status := ""
		if err != nil {
			recordDiff(tool)
			status = fmt.Sprintf(" **NOT EQUAL**: %v", err)
		}
		fmt.Printf("| %s | %d | %.1f%% of a core |%s %d |\n", tool, n, 100*cpu.Seconds()/time.Since(t0).Seconds(), status, rsyncs)
		b.done(src)
	}
	fmt.Println()
}

// ---- throughput ------------------------------------------------------------

func (b *bench) throughput() {
	total := int64(*bigGB * (1 << 30))
	const fileSize = 512 << 20
	nfiles := int(max(total/fileSize, 1))
	bytes := float64(int64(nfiles) * fileSize)
	fmt.Printf("## Throughput: %d × 512 MiB written at full speed (writer's input: %s), %d rounds\n\n", nfiles, *writerIn, *bigRuns)
	fmt.Println("Each file carries Samba's attributes (Finder info, DOS attributes, a Windows ACL) and a POSIX ACL;")
	fmt.Println("`cp -a`, syncer and lsyncd-XA (rsync -XA) keep them and are checked for them, syncer-nometa and lsyncd drop them.")
	fmt.Println()
	// The same bytes for everyone: one random block repeated, generated once.
	block := make([]byte, 8<<20)
	for i := range block {
		block[i] = byte(rand.Uint32())
	}
	stage := filepath.Join(b.work, "big")
	check(os.MkdirAll(stage, 0o755))
	for i := range nfiles {
		f, err := os.Create(filepath.Join(stage, fmt.Sprintf("clip%d.mov", i)))
		check(err)
		for w := 0; w < fileSize; w += len(block) {
			_, err = f.Write(block)
			check(err)
		}
		check(f.Close())
		samba(f.Name())
	}
	// The backup is another device in production (a second NAS). Here both
	// trees would share one disk, which makes any replicator write every
	// byte twice to it and caps every tool near half of cp. So the backup
	// gets a filesystem of its own, a tmpfs, for cp and every tool alike,
	// and "on the backup" means in the backup filesystem (synced there).
	backupFS := filepath.Join(b.work, "backup-fs")
	check(os.MkdirAll(backupFS, 0o755))
	if err := syscall.Mount("tmpfs", backupFS, "tmpfs", 0, fmt.Sprintf("size=%d", total+(1<<30))); err != nil {
		fmt.Printf("(no tmpfs for the backup: %v; source and backup share one disk)\n\n", err)
	} else {
		defer func() { _ = syscall.Unmount(backupFS, 0) }()
	}
	// This machine's speed drifts by several times within minutes: each
	// round times cp and then every tool, and each tool's ratio is taken
	// within its round.
	ratios := map[string][]float64{}
	fmt.Println("| round | tool | write | on the backup after first byte | backup MB/s | vs `cp` (clean cache) of this round | vs write, then `cp` |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for round := 1; round <= *bigRuns; round++ {
		// cp, caches dropped like for everyone below: its MB/s is the ceiling.
		cpDst := filepath.Join(backupFS, "cp")
		startClean("")
		t0 := time.Now()
		run("cp", "-a", stage, cpDst)
		syncOf(cpDst)
		cpMBs := bytes / time.Since(t0).Seconds() / 1e6
		fmt.Printf("| %d | `cp` (clean cache) | | %.1f s | %.0f | 1× | |\n", round, time.Since(t0).Seconds(), cpMBs)
		check(os.RemoveAll(cpDst))
		// cp's own task for syncer: the same files at rest, clean cache,
		// one `syncer reconcile`.
		check(os.MkdirAll(cpDst, 0o755))
		state := filepath.Join(b.work, "reconcile-state")
		startClean("")
		t0 = time.Now()
		run(b.syncer, "reconcile", "--source", stage, "--dest", cpDst, "--state-dir", state, "--log-level", "error", "--json")
		syncOf(cpDst)
		restMBs := bytes / time.Since(t0).Seconds() / 1e6
		ratios["syncer reconcile (at rest)"] = append(ratios["syncer reconcile (at rest)"], restMBs/cpMBs)
		fmt.Printf("| %d | `syncer reconcile` of the files at rest | | %.1f s | %.0f | %.2f× | |\n", round, time.Since(t0).Seconds(), restMBs, restMBs/cpMBs)
		check(os.RemoveAll(cpDst))
		check(os.RemoveAll(state))
		// What a replicator that starts once the writer is done can do:
		// the writer, then one cp of its files.
		src, _ := b.tree()
		startClean(stage)
		t0 = time.Now()
		run("cp", "-a", stage, filepath.Join(src, "big"))
		wrote := time.Since(t0)
		run("cp", "-a", filepath.Join(src, "big"), cpDst)
		syncOf(cpDst)
		afterTime := time.Since(t0)
		afterMBs := bytes / afterTime.Seconds() / 1e6
		fmt.Printf("| %d | write, then `cp` | %.1f s | %.1f s | %.0f | %.2f× | 1× |\n", round, wrote.Seconds(), afterTime.Seconds(), afterMBs, afterMBs/cpMBs)
		check(os.RemoveAll(cpDst))
		b.done(src)
		for _, tool := range strings.Split(*bigTools, ",") {
			src, _ := b.tree()
			dst := filepath.Join(backupFS, tool)
			check(os.MkdirAll(dst, 0o755))
			check(os.MkdirAll(filepath.Join(src, "p0"), 0o755))
			dm := b.start(tool, src, dst)
			startClean(stage)
			t0 := time.Now()
			// The writer copies the staged files in: a render or an ingest.
			run("cp", "-a", stage, filepath.Join(src, "p0/big"))
			wrote := time.Since(t0)
			err := waitEqualMeta(src, dst, 20*time.Minute, keepsMeta(tool))
			syncOf(dst)
			took := time.Since(t0)
			dm.stop()
			if err != nil {
				recordDiff(tool)
				fmt.Printf("| %d | %s | **NOT EQUAL**: %v |||||\n", round, tool, err)
				continue
			}
			mbs := bytes / took.Seconds() / 1e6
			ratios[tool] = append(ratios[tool], mbs/cpMBs)
			fmt.Printf("| %d | %s | %.1f s | %.1f s | %.0f | %.2f× | %.2f× |\n", round, tool, wrote.Seconds(), took.Seconds(), mbs, mbs/cpMBs, mbs/afterMBs)
			b.done(src)
			if !*keep {
				check(os.RemoveAll(dst))
			}
		}
	}
	fmt.Println()
	for _, tool := range append([]string{"syncer reconcile (at rest)"}, strings.Split(*bigTools, ",")...) {
		if r := ratios[tool]; len(r) > 0 {
			slices.Sort(r)
			fmt.Printf("%s: median %.2f× `cp` over %d rounds (%s)\n", tool, r[len(r)/2], len(r), fmtRatios(r))
		}
	}
	fmt.Println()
}

func fmtRatios(r []float64) string {
	parts := make([]string, len(r))
	for i, x := range r {
		parts[i] = fmt.Sprintf("%.2f×", x)
	}
	return strings.Join(parts, ", ")
}

// ---- rename ----------------------------------------------------------------

// rename measures what renaming a large folder costs each tool: the time
// until the backup equals the source, and the bytes written to the
// backup's block device (a loop-mounted ext4 of its own, so that every
// tool is counted alike, its trash included).
func (b *bench) rename() {
	const nfiles = 200
	size := int64(*renGB*(1<<30)) / nfiles
	fmt.Printf("## Rename: a folder of %d files, %.1f GiB, renamed within its project\n\n", nfiles, *renGB)
	src, _ := b.tree()
	shots := filepath.Join(src, "p0", "shots")
	check(os.MkdirAll(shots, 0o755))
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(rand.Uint32())
	}
	for i := range nfiles {
		f, err := os.Create(filepath.Join(shots, fmt.Sprintf("take%03d.mov", i)))
		check(err)
		for w := int64(0); w < size; w += int64(len(block)) {
			block[0], block[1] = byte(i), byte(w>>20)
			_, err = f.Write(block[:min(int64(len(block)), size-w)])
			check(err)
		}
		check(f.Close())
	}
	fmt.Println("| tool | on the backup after | written to the backup | rsyncs |")
	fmt.Println("|---|---|---|---|")
	for _, tool := range strings.Split(*renTools, ",") {
		if tool == "lsyncd-ssh" && !b.startSSHD() {
			fmt.Printf("| %s | (no sshd here: apt-get install openssh-server) | | |\n", tool)
			continue
		}
		dst, dev, unmount := b.loopBackup(tool, int64(*renGB*(1<<30))*3/2+(512<<20))
		run("rsync", "-aX", "--delete", src+"/", dst+"/")
		dm := b.start(tool, src, dst)
		syncOf(dst)
		before := sectorsWritten(dev)
		t0 := time.Now()
		check(os.Rename(shots, shots+"_v2"))
		err := waitEqual(src, dst, 20*time.Minute)
		took := time.Since(t0)
		syncOf(dst)
		written := (sectorsWritten(dev) - before) * 512
		dm.stop()
		check(os.Rename(shots+"_v2", shots))
		unmount()
		if err != nil {
			recordDiff(tool)
			fmt.Printf("| %s | **NOT EQUAL**: %v | | |\n", tool, err)
			continue
		}
		fmt.Printf("| %s | %.2f s | %.1f MiB | %d |\n", tool, took.Seconds(), float64(written)/(1<<20), dm.rsyncs())
	}
	fmt.Println()
	if b.ssh.cmd != nil {
		_ = b.ssh.cmd.Process.Kill()
		_ = b.ssh.cmd.Wait()
		b.ssh.port, b.ssh.cmd = 0, nil
	}
	b.done(src)
}

// loopBackup makes a fresh ext4 of size bytes in a file, mounted at a
// directory it returns with the block device's name (for its counters).
func (b *bench) loopBackup(name string, size int64) (dir, dev string, unmount func()) {
	img := filepath.Join(b.work, name+".img")
	f, err := os.Create(img)
	check(err)
	check(f.Truncate(size))
	check(f.Close())
	run("mkfs.ext4", "-q", "-F", img)
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	check(err)
	loop := strings.TrimSpace(string(out))
	dir = filepath.Join(b.work, name+".mnt")
	check(os.MkdirAll(dir, 0o755))
	run("mount", loop, dir)
	return dir, filepath.Base(loop), func() {
		run("umount", dir)
		run("losetup", "-d", loop)
		check(os.Remove(img))
	}
}

// sectorsWritten reads the sectors written to the block device dev.
func sectorsWritten(dev string) int64 {
	b, err := os.ReadFile("/sys/block/" + dev + "/stat")
	check(err)
	f := strings.Fields(string(b))
	n, err := strconv.ParseInt(f[6], 10, 64)
	check(err)
	return n
}

// startSSHD starts, once, an sshd of the benchmark's own on a loopback
// port that lets root in with a key made for it (lsyncd's rsync-over-ssh
// mode needs one); false when there is none.
func (b *bench) startSSHD() bool {
	if b.ssh.port != 0 {
		return true
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		return false
	}
	dir := filepath.Join(b.work, "sshd")
	check(os.MkdirAll(dir, 0o700))
	for _, k := range []string{"host", "user"} {
		run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k))
	}
	pub, err := os.ReadFile(filepath.Join(dir, "user.pub"))
	check(err)
	check(os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	check(os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(testutil.SSHDConfig(port, dir)), 0o600))
	check(os.MkdirAll("/run/sshd", 0o755))
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	check(cmd.Start())
	b.ssh.cmd = cmd
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.ssh.port, b.ssh.key = port, filepath.Join(dir, "user")
	return true
}

// ---- equality --------------------------------------------------------------

// waitEqual polls until dst equals src or timeout passes; it returns the last difference.
func waitEqual(src, dst string, timeout time.Duration) error {
	return waitEqualMeta(src, dst, timeout, false)
}

// waitEqualMeta is waitEqual, comparing extended attributes and ACLs too when meta is set.
func waitEqualMeta(src, dst string, timeout time.Duration, meta bool) error {
	deadline := time.Now().Add(timeout)
	for {
		err := equal(src, dst, meta)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// equal compares the trees: names, types, sizes, modes, mtimes (of files),
// symlink targets, and the content of files up to 64 KiB. syncer's trash is
// not part of the mirror.
func equal(src, dst string, meta bool) error {
	a, err := scan(src, meta)
	if err != nil {
		return err
	}
	b, err := scan(dst, meta)
	if err != nil {
		return err
	}
	var diffs []string
	for p, x := range a {
		if y, ok := b[p]; !ok {
			diffs = append(diffs, "missing "+p)
		} else if x != y {
			diffs = append(diffs, "differs "+p)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			diffs = append(diffs, "extra "+p)
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return fmt.Errorf("%d differences, first: %s", len(diffs), diffs[0])
}

func scan(root string, meta bool) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // changing under us: the next poll sees it
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == ".syncer-trash" {
			return filepath.SkipDir
		}
		if p == root {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			desc += fmt.Sprintf(" %d %d", fi.Size(), fi.ModTime().UnixNano())
			if fi.Size() <= 64<<10 {
				b, err := os.ReadFile(p)
				if err != nil {
					return nil
				}
				desc += " " + string(b)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			desc += " -> " + t
		}
		if meta {
			desc += " " + xattrs(p)
		}
		out[rel] = desc
		return nil
	})
	return out, err
}

// ---- helpers ---------------------------------------------------------------

// keepsMeta says whether tool is set to keep extended attributes and ACLs.
func keepsMeta(tool string) bool {
	return tool == "syncer" || tool == "syncer-fanotify" || tool == "syncer-inotify" || tool == "lsyncd-XA"
}

// samba gives p what a Samba share stores beside a file's contents: Finder
// info, DOS attributes, a Windows ACL, and a POSIX ACL granting uid 1001.
func samba(p string) {
	le := func(b []byte, v ...uint32) []byte {
		for _, x := range v {
			b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
		}
		return b
	}
	entry := func(b []byte, tag, perm, id uint32) []byte { return le(b, tag|perm<<16, id) }
	acl := le(nil, 2) // POSIX ACL xattr version 2; entries ordered by tag
	acl = entry(acl, 0x01, 6, ^uint32(0))
	acl = entry(acl, 0x02, 6, 1001)
	acl = entry(acl, 0x04, 4, ^uint32(0))
	acl = entry(acl, 0x10, 6, ^uint32(0))
	acl = entry(acl, 0x20, 4, ^uint32(0))
	for _, a := range []struct {
		name  string
		value []byte
	}{
		{"user.DosStream.AFP_AfpInfo:$DATA", bytes.Repeat([]byte{'A', 'F', 0, 0xff}, 8)},
		{"user.DOSATTRIB", []byte{0, 0, 4, 0, 4, 0, 0, 0, 0x11, 0, 0, 0, 0x20}},
		{"security.NTACL", bytes.Repeat([]byte{4, 0, 2}, 40)},
		{"system.posix_acl_access", acl},
	} {
		check(unix.Setxattr(p, a.name, a.value, 0))
	}
}

// xattrs lists p's extended attributes (ACLs included) with their values, sorted.
func xattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return ""
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s=%x", name, v[:m]))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// build compiles syncer into dir.
func build(dir string) (string, error) {
	bin := filepath.Join(dir, "syncer")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/syncer").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build syncer: %v\n%s", err, out)
	}
	return bin, nil
}

func procStatus(pid int, key string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key {
			n, _ := strconv.ParseFloat(f[1], 64)
			return n
		}
	}
	return 0
}

// startClean prepares every timed throughput step alike: caches dropped,
// the writer's input (a directory, "" for a step without a writer) read in
// when -writer is "memory", then memory settled.
func startClean(writerInput string) {
	dropCaches()
	if writerInput != "" && *writerIn == "memory" {
		names, err := filepath.Glob(filepath.Join(writerInput, "*"))
		check(err)
		for _, name := range names {
			f, err := os.Open(name)
			check(err)
			_, err = io.Copy(io.Discard, f)
			f.Close()
			check(err)
		}
	}
	settle()
}

// settle waits until the hypervisor has taken back the memory the guest
// just freed (free page reporting; here after drop_caches or a removed
// backup), so that every timed step starts on the same kind of page: none
// gets pages freed a moment ago while the next pays for reclaimed ones.
// Without page reporting it returns at once.
func settle() {
	const counter = "/sys/module/page_reporting/parameters/reported_kib"
	read := func() (int64, bool) {
		b, err := os.ReadFile(counter)
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n, err == nil
	}
	// Reporting goes in 512 MiB steps every 2 s, then trickles; settled is
	// less than 128 MiB over 3 s.
	last, ok := read()
	for deadline := time.Now().Add(time.Minute); ok && time.Now().Before(deadline); {
		time.Sleep(3 * time.Second)
		cur, _ := read()
		if cur-last < 128<<10 {
			return
		}
		last = cur
	}
}

func dropCaches() {
	syncFS()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200) // root only; best effort
}

func syncFS() { syscall.Sync() }

// syncOf writes out the dirty data of the filesystem holding path only.
func syncOf(path string) {
	f, err := os.Open(path)
	check(err)
	defer f.Close()
	check(unix.Syncfs(int(f.Fd())))
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

func run(name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		fail("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	os.Exit(1)
}

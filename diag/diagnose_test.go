package diag_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/diag"
)

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

// snap builds a pair of snapshots 10 s apart from per-core busy shares,
// a disk busy share and MB/s, a link share, and swap MB/s.
func snap(cores []float64, iowait, diskBusy, diskMBps, linkShare, swapMBps, availShare float64, rsyncs int) (diag.Snapshot, diag.Snapshot) {
	const dt = 10.0
	prev := diag.Snapshot{At: t0, Disks: map[string]diag.DiskIO{"sdb": {}}, Nets: map[string]diag.NetIO{"eth0": {SpeedMbps: 1000}},
		MemTotal: 16 << 30, MemAvailable: uint64(availShare * float64(16<<30)), RsyncCount: rsyncs}
	cur := prev
	cur.At = t0.Add(dt * time.Second)
	for _, u := range cores {
		prev.Cores = append(prev.Cores, diag.CPUTimes{})
		cur.Cores = append(cur.Cores, diag.CPUTimes{Busy: u * dt, Idle: (1 - u - iowait) * dt, Iowait: iowait * dt})
	}
	cur.Disks = map[string]diag.DiskIO{"sdb": {WriteBytes: uint64(diskMBps * 1e6 * dt), IOTimeMs: uint64(diskBusy * dt * 1000)}}
	cur.Nets = map[string]diag.NetIO{"eth0": {SpeedMbps: 1000, BytesSent: uint64(linkShare * 1000e6 / 8 * dt)}}
	cur.SwapOut = uint64(swapMBps * 1e6 * dt)
	return prev, cur
}

func TestDiagnose(t *testing.T) {
	pending := diag.Queue{Known: true, Pending: 40, InFlight: 1, Workers: 8, Busy: 1}
	tests := []struct {
		name     string
		cores    []float64
		iowait   float64
		disk     [2]float64
		link     float64
		swap     float64
		avail    float64
		q        diag.Queue
		want     string
		inResult string
	}{
		{"one core busy, seven idle, jobs pending", []float64{0.98, 0.02, 0.03, 0.01, 0.02, 0.05, 0.01, 0.02}, 0, [2]float64{0.3, 40}, 0.05, 0, 0.6, pending,
			diag.CPU, "1 of 8 cores busy, 7 idle"},
		{"every core busy", []float64{0.97, 0.95, 0.99, 0.96}, 0, [2]float64{0.3, 40}, 0.05, 0, 0.6, pending, diag.CPU, "all 4 cores busy"},
		{"disk saturated", []float64{0.3, 0.2}, 0.4, [2]float64{0.97, 180}, 0.05, 0, 0.6, pending, diag.Disk, "sdb 97% busy at 180.0 MB/s"},
		{"link full", []float64{0.3, 0.2}, 0, [2]float64{0.2, 20}, 0.94, 0, 0.6, pending, diag.Network, "eth0 at 94% of its link"},
		{"swapping", []float64{0.3, 0.2}, 0, [2]float64{0.2, 20}, 0.1, 25, 0.02, pending, diag.Memory, "swapping 25.0 MB/s"},
		{"idle", []float64{0.01, 0.02}, 0, [2]float64{0.0, 0}, 0, 0, 0.8, diag.Queue{Known: true, Workers: 2}, diag.Idle, "nothing pending"},
		{"latency", []float64{0.2, 0.15}, 0.1, [2]float64{0.2, 5}, 0.05, 0, 0.7, pending, diag.Latency, "no resource saturated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, cur := snap(tt.cores, tt.iowait, tt.disk[0], tt.disk[1], tt.link, tt.swap, tt.avail, 1)
			v := diag.Diagnose(prev, cur, tt.q)
			if v.Bottleneck != tt.want || !strings.Contains(v.Summary, tt.inResult) {
				t.Errorf("Diagnose() = %s: %q, want %s mentioning %q\nevidence: %v", v.Bottleneck, v.Summary, tt.want, tt.inResult, v.Evidence)
			}
			if v.Advice == "" || len(v.Evidence) < 3 {
				t.Errorf("verdict lacks advice or evidence: %+v", v)
			}
		})
	}
	if v := diag.Diagnose(diag.Snapshot{}, diag.Snapshot{}, diag.Queue{}); v.Bottleneck != diag.Idle {
		t.Errorf("Diagnose(empty) = %+v", v)
	}
}

// TestDiagnose_Disk: the disk verdict weighs the queue, iowait and the
// device's best throughput, not the busy share alone, and names who does
// the I/O.
func TestDiagnose_Disk(t *testing.T) {
	pending := diag.Queue{Known: true, Pending: 40, InFlight: 1, Workers: 8, Busy: 1}
	for _, tt := range []struct {
		name                    string
		iowait, busy, mbps, aqu float64
		peak                    float64
		want, inSummary         string
	}{
		// One `dd oflag=direct`: 82% busy, one request at a time, but
		// the writer waits on the disk all the time.
		{"one direct writer", 0.4, 0.82, 932, 1, 0, diag.Disk, "most i/o: dd (pid 7) 932.0 MB/s"},
		{"two direct writers", 0.45, 0.99, 950, 2, 0, diag.Disk, "2.0 requests queued"},
		// A device that serves many requests at once, busy but not waited for.
		{"ssd busy, not waited for", 0.02, 0.9, 80, 0.4, 0, diag.Latency, "no resource saturated"},
		{"near its best", 0.05, 0.6, 190, 0.8, 200, diag.Disk, "disk-bound"},
		{"far from its best", 0.05, 0.6, 40, 0.8, 200, diag.Latency, "no resource saturated"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prev, cur := snap([]float64{0.2, 0.1}, tt.iowait, tt.busy, tt.mbps, 0.01, 0, 0.6, 0)
			d := cur.Disks["sdb"]
			d.WeightedMs = uint64(tt.aqu * 10 * 1000)
			cur.Disks["sdb"] = d
			if tt.peak > 0 {
				cur.Peaks = map[string]float64{"sdb": tt.peak}
			}
			prev.Procs = map[int32]diag.Proc{7: {Name: "dd"}, 8: {Name: "bash"}}
			cur.Procs = map[int32]diag.Proc{7: {Name: "dd", CPU: 2, IO: uint64(tt.mbps * 1e6 * 10)}, 8: {Name: "bash"}}
			v := diag.Diagnose(prev, cur, pending)
			if v.Bottleneck != tt.want || !strings.Contains(v.Summary, tt.inSummary) {
				t.Errorf("Diagnose() = %s: %q, want %s mentioning %q\nevidence: %v", v.Bottleneck, v.Summary, tt.want, tt.inSummary, v.Evidence)
			}
		})
	}
}

// TestDiagnose_CPUHog: a process that is not the backup's keeps a core
// busy: the verdict names it, and does not simply advise more workers.
func TestDiagnose_CPUHog(t *testing.T) {
	prev, cur := snap([]float64{0.99, 0.02}, 0, 0.1, 5, 0.01, 0, 0.6, 0)
	prev.Procs = map[int32]diag.Proc{99: {Name: "ffmpeg"}, 5: {Name: "rsync"}}
	cur.Procs = map[int32]diag.Proc{99: {Name: "ffmpeg", CPU: 9.8}, 5: {Name: "rsync", CPU: 0.3}}
	v := diag.Diagnose(prev, cur, diag.Queue{Known: true, Pending: 40, Workers: 2, Busy: 1})
	if v.Bottleneck != diag.CPU || !strings.Contains(v.Summary, "ffmpeg (pid 99) 1.0 cores") || !strings.Contains(v.Advice, "ffmpeg") || !strings.Contains(v.Advice, "will help") {
		t.Errorf("Diagnose() = %s: %q / %q; want CPU naming ffmpeg in the summary and the advice", v.Bottleneck, v.Summary, v.Advice)
	}
}

// TestMonitor checks that Monitor hands over a verdict per interval, says
// changed only when the bottleneck is not the one before, and stops with ctx.
func TestMonitor(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var verdicts []diag.Verdict
	var changed []bool
	err := diag.Monitor(ctx, 20*time.Millisecond, func(context.Context) diag.Queue { return diag.Queue{Known: true, Workers: 2} },
		func(v diag.Verdict, c bool) {
			verdicts, changed = append(verdicts, v), append(changed, c)
			if len(verdicts) == 3 {
				cancel()
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(verdicts) != 3 || !changed[0] {
		t.Fatalf("verdicts %d, changed %v: want 3, the first a change", len(verdicts), changed)
	}
	for i := 1; i < 3; i++ {
		if changed[i] != (verdicts[i].Bottleneck != verdicts[i-1].Bottleneck) {
			t.Errorf("verdict %d: changed %v, bottleneck %q after %q", i, changed[i], verdicts[i].Bottleneck, verdicts[i-1].Bottleneck)
		}
	}
}

package diag

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// CPUTimes are one core's cumulative times, in seconds.
type CPUTimes struct {
	Busy, Idle, Iowait float64
}

// DiskIO are one disk's cumulative counters.
type DiskIO struct {
	ReadBytes, WriteBytes uint64
	Reads, Writes         uint64
	IOTimeMs              uint64 // time the device had I/O in flight
}

// NetIO are one interface's cumulative counters and link speed.
type NetIO struct {
	BytesSent, BytesRecv uint64
	SpeedMbps            int // 0 when unknown
}

// Snapshot is the machine at one moment.
type Snapshot struct {
	At           time.Time
	Cores        []CPUTimes
	Load1        float64
	Disks        map[string]DiskIO
	Nets         map[string]NetIO
	MemTotal     uint64
	MemAvailable uint64
	SwapIn       uint64 // cumulative bytes swapped in
	SwapOut      uint64
	RsyncCount   int
	RsyncCPU     float64 // cumulative CPU seconds of the rsync processes seen
	RsyncIO      uint64  // cumulative bytes read and written by them
}

// Queue is what the daemon's queue says; Known is false without a daemon.
type Queue struct {
	Known             bool
	Pending, InFlight int
	Workers, Busy     int
}

// Bottlenecks.
const (
	CPU     = "cpu"
	Disk    = "disk"
	Network = "network"
	Memory  = "memory"
	Latency = "latency" // nothing saturated while work waits: round trips
	Idle    = "idle"
)

// Verdict names what limits the sync, with the figures behind it.
type Verdict struct {
	Bottleneck string   `json:"bottleneck"`
	Summary    string   `json:"summary"`
	Advice     string   `json:"advice"`
	Evidence   []string `json:"evidence"`
}

// Thresholds.
const (
	busyCore    = 0.75 // a core this busy counts as busy
	idleCore    = 0.25 // and this little as idle
	busyDisk    = 0.85 // share of time with I/O in flight
	busyLink    = 0.85 // share of link speed
	swapRateBps = 1 << 20
	lowMemory   = 0.05
)

// Diagnose compares two snapshots taken some seconds apart.
func Diagnose(prev, cur Snapshot, q Queue) Verdict {
	dt := cur.At.Sub(prev.At).Seconds()
	if dt <= 0 || len(cur.Cores) == 0 || len(prev.Cores) != len(cur.Cores) {
		return Verdict{Bottleneck: Idle, Summary: "not enough data: take two snapshots at least a second apart"}
	}
	var ev []string
	// CPU per core.
	var busy, idle int
	var total, iowait float64
	var perCore []string
	for i := range cur.Cores {
		db := cur.Cores[i].Busy - prev.Cores[i].Busy
		di := cur.Cores[i].Idle - prev.Cores[i].Idle
		dw := cur.Cores[i].Iowait - prev.Cores[i].Iowait
		all := db + di + dw
		if all <= 0 {
			continue
		}
		u := db / all
		total += u
		iowait += dw / all
		switch {
		case u >= busyCore:
			busy++
		case u <= idleCore:
			idle++
		}
		perCore = append(perCore, fmt.Sprintf("%.0f%%", 100*u))
	}
	n := len(cur.Cores)
	cpuAvg, iowaitAvg := total/float64(n), iowait/float64(n)
	ev = append(ev, fmt.Sprintf("cpu: %d cores, %.0f%% busy on average (per core %s), iowait %.0f%%, load %.2f",
		n, 100*cpuAvg, strings.Join(perCore, " "), 100*iowaitAvg, cur.Load1))
	if cur.RsyncCount > 0 || prev.RsyncCount > 0 {
		ev = append(ev, fmt.Sprintf("rsync: %d processes using %.1f cores, %.1f MB/s of I/O", cur.RsyncCount,
			max(0, cur.RsyncCPU-prev.RsyncCPU)/dt, float64(max(cur.RsyncIO, prev.RsyncIO)-prev.RsyncIO)/dt/1e6))
	}
	// Disks: the busiest.
	var diskName string
	var diskBusy, diskMBps, diskIOPS float64
	for _, name := range slices.Sorted(maps.Keys(cur.Disks)) {
		p, ok := prev.Disks[name]
		if !ok {
			continue
		}
		c := cur.Disks[name]
		b := float64(c.IOTimeMs-p.IOTimeMs) / 1000 / dt
		if b > diskBusy || diskName == "" {
			diskName, diskBusy = name, min(b, 1)
			diskMBps = float64((c.ReadBytes-p.ReadBytes)+(c.WriteBytes-p.WriteBytes)) / dt / 1e6
			diskIOPS = float64((c.Reads-p.Reads)+(c.Writes-p.Writes)) / dt
		}
	}
	if diskName != "" {
		ev = append(ev, fmt.Sprintf("disk: %s %.0f%% busy at %.1f MB/s, %.0f IOPS", diskName, 100*diskBusy, diskMBps, diskIOPS))
	}
	// Network: the fullest link, or the busiest interface when no link speed is known.
	var netName string
	var netShare, netMbps float64
	for _, name := range slices.Sorted(maps.Keys(cur.Nets)) {
		p, ok := prev.Nets[name]
		c := cur.Nets[name]
		if !ok {
			continue
		}
		mbps := float64((c.BytesSent-p.BytesSent)+(c.BytesRecv-p.BytesRecv)) * 8 / dt / 1e6
		share := 0.0
		if c.SpeedMbps > 0 {
			share = mbps / float64(c.SpeedMbps)
		}
		if netName == "" || share > netShare || (share == netShare && mbps > netMbps) {
			netName, netShare, netMbps = name, share, mbps
		}
	}
	switch {
	case netName == "":
	case cur.Nets[netName].SpeedMbps > 0:
		ev = append(ev, fmt.Sprintf("network: %s %.0f Mb/s, %.0f%% of its %d Mb/s link", netName, netMbps, 100*netShare, cur.Nets[netName].SpeedMbps))
	default:
		ev = append(ev, fmt.Sprintf("network: %s %.0f Mb/s (link speed unknown)", netName, netMbps))
	}
	// Memory.
	swapRate := float64((cur.SwapIn-prev.SwapIn)+(cur.SwapOut-prev.SwapOut)) / dt
	avail := 1.0
	if cur.MemTotal > 0 {
		avail = float64(cur.MemAvailable) / float64(cur.MemTotal)
	}
	ev = append(ev, fmt.Sprintf("memory: %.0f%% available, swapping %.1f MB/s", 100*avail, swapRate/1e6))
	if q.Known {
		ev = append(ev, fmt.Sprintf("queue: %d pending, %d in flight, %d of %d workers busy", q.Pending, q.InFlight, q.Busy, q.Workers))
	}
	waiting := !q.Known || q.Pending > 0

	v := Verdict{Evidence: ev}
	switch {
	case swapRate >= swapRateBps || avail < lowMemory:
		v.Bottleneck, v.Summary = Memory, fmt.Sprintf("memory-bound: %.0f%% available, swapping %.1f MB/s", 100*avail, swapRate/1e6)
		v.Advice = "more workers will not help; fewer will: each rsync holds its file list in memory"
	case diskBusy >= busyDisk:
		v.Bottleneck, v.Summary = Disk, fmt.Sprintf("disk-bound: %s %.0f%% busy at %.1f MB/s", diskName, 100*diskBusy, diskMBps)
		v.Advice = "more workers will not help: the disk is saturated (faster disks, or spread projects over disks)"
	case netName != "" && netShare >= busyLink:
		v.Bottleneck, v.Summary = Network, fmt.Sprintf("network-bound: %s at %.0f%% of its link", netName, 100*netShare)
		v.Advice = "more workers will not help: the link is full (a faster link, or compression if CPU is idle)"
	case cpuAvg >= 0.9:
		v.Bottleneck, v.Summary = CPU, fmt.Sprintf("CPU-bound: all %d cores busy (%.0f%%)", n, 100*cpuAvg)
		v.Advice = "more workers will not help: every core is busy"
	case busy > 0 && idle > 0 && waiting:
		v.Bottleneck, v.Summary = CPU, fmt.Sprintf("CPU-bound: %d of %d cores busy, %d idle", busy, n, idle)
		v.Advice = "more workers will help: a single process keeps one core busy while the others idle"
	case q.Known && q.Pending == 0 && q.InFlight == 0 && cpuAvg < 0.2:
		v.Bottleneck, v.Summary, v.Advice = Idle, "idle: nothing pending", "nothing to do"
	case !q.Known && cpuAvg < 0.1 && diskBusy < 0.1 && cur.RsyncCount == 0:
		v.Bottleneck, v.Summary, v.Advice = Idle, "idle: no load and no rsync running", "nothing to do"
	default:
		v.Bottleneck = Latency
		v.Summary = fmt.Sprintf("no resource saturated (cpu %.0f%%, disk %.0f%%, iowait %.0f%%) while work waits", 100*cpuAvg, 100*diskBusy, 100*iowaitAvg)
		v.Advice = "the limit is per-file latency (metadata round trips): more workers will help"
	}
	return v
}

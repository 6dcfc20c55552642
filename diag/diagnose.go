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
	WeightedMs            uint64 // requests' time in flight, summed: its rate is the queue depth
}

// Proc is one process's cumulative use.
type Proc struct {
	Name string
	CPU  float64 // CPU seconds
	IO   uint64  // bytes it made the storage read and write
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
	Procs        map[int32]Proc
	// Peaks is the most MB/s each disk showed before this snapshot's
	// interval, when known: what it can do (the daemon's Monitor keeps
	// it over its life).
	Peaks map[string]float64
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
	deepQueue   = 2.0  // requests in flight on average: the device is being waited for
	waitedDisk  = 0.2  // iowait share of all CPU time that says processes wait for the disk
	nearPeak    = 0.8  // share of the device's best throughput that counts as saturated
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
	var diskBusy, diskMBps, diskIOPS, diskQueue float64
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
			diskQueue = float64(c.WeightedMs-p.WeightedMs) / 1000 / dt
		}
	}
	peak := cur.Peaks[diskName]
	if diskName != "" {
		line := fmt.Sprintf("disk: %s %.0f%% busy at %.1f MB/s, %.0f IOPS, %.1f requests in flight on average", diskName, 100*diskBusy,
			diskMBps, diskIOPS, diskQueue)
		if peak > 0 {
			line += fmt.Sprintf(", %.0f%% of the %.1f MB/s it has shown", 100*diskMBps/peak, peak)
		}
		ev = append(ev, line)
	}
	// A busy-time share alone misleads on SSDs and virtual disks, which
	// serve many requests at once: 85% busy may be a quarter of what they
	// can do. The disk limits when it is also waited for (a queue, or
	// processes in iowait), or runs near the best it has shown.
	diskBound := (diskBusy >= busyDisk && (diskQueue >= 1 || iowaitAvg >= waitedDisk/2)) ||
		(diskBusy >= 0.5 && (diskQueue >= deepQueue || iowaitAvg >= waitedDisk)) ||
		(peak > 0 && diskBusy >= 0.5 && diskMBps >= nearPeak*peak)
	topCPU, topIO := top(prev, cur, dt)
	if len(topCPU) > 0 {
		ev = append(ev, "top cpu: "+strings.Join(topCPU, ", "))
	}
	if len(topIO) > 0 {
		ev = append(ev, "top i/o: "+strings.Join(topIO, ", "))
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
	case diskBound:
		v.Bottleneck, v.Summary = Disk, fmt.Sprintf("disk-bound: %s %.0f%% busy at %.1f MB/s, %.1f requests queued, iowait %.0f%%",
			diskName, 100*diskBusy, diskMBps, diskQueue, 100*iowaitAvg)
		v.Advice = "more workers will not help: the disk is saturated (faster disks, or spread projects over disks)"
		if len(topIO) > 0 {
			v.Summary += "; most i/o: " + topIO[0]
		}
	case netName != "" && netShare >= busyLink:
		v.Bottleneck, v.Summary = Network, fmt.Sprintf("network-bound: %s at %.0f%% of its link", netName, 100*netShare)
		v.Advice = "more workers will not help: the link is full (a faster link, or compression if CPU is idle)"
	case cpuAvg >= 0.9:
		v.Bottleneck, v.Summary = CPU, fmt.Sprintf("CPU-bound: all %d cores busy (%.0f%%)", n, 100*cpuAvg)
		v.Advice = "more workers will not help: every core is busy"
		if len(topCPU) > 0 {
			v.Summary += "; most cpu: " + topCPU[0]
		}
	case busy > 0 && idle > 0 && waiting:
		v.Bottleneck, v.Summary = CPU, fmt.Sprintf("CPU-bound: %d of %d cores busy, %d idle", busy, n, idle)
		v.Advice = "more workers will help: a single process keeps one core busy while the others idle"
		if len(topCPU) > 0 {
			v.Summary += "; most cpu: " + topCPU[0]
			if name := topName(prev, cur, dt); name != "" && name != "rsync" && name != "syncer" {
				v.Advice = fmt.Sprintf("more workers will help use the idle cores, but the busy ones are %s's, not the backup's: "+
					"see whether %s should run now", name, name)
			}
		}
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

// topN is how many processes evidence names per resource.
const topN = 3

// top names the processes that used the most CPU and the most I/O between
// two snapshots: "dd (pid 42) 0.9 cores".
func top(prev, cur Snapshot, dt float64) (cpu, io []string) {
	type use struct {
		pid  int32
		name string
		cpu  float64
		io   float64
	}
	var uses []use
	for pid, c := range cur.Procs {
		p, ok := prev.Procs[pid]
		if !ok || p.Name != c.Name {
			continue
		}
		uses = append(uses, use{pid, c.Name, (c.CPU - p.CPU) / dt, float64(c.IO-min(p.IO, c.IO)) / dt / 1e6})
	}
	slices.SortFunc(uses, func(a, b use) int { return cmpFloat(b.cpu, a.cpu) })
	for _, u := range uses[:min(topN, len(uses))] {
		if u.cpu >= 0.05 {
			cpu = append(cpu, fmt.Sprintf("%s (pid %d) %.1f cores", u.name, u.pid, u.cpu))
		}
	}
	slices.SortFunc(uses, func(a, b use) int { return cmpFloat(b.io, a.io) })
	for _, u := range uses[:min(topN, len(uses))] {
		if u.io >= 0.1 {
			io = append(io, fmt.Sprintf("%s (pid %d) %.1f MB/s", u.name, u.pid, u.io))
		}
	}
	return cpu, io
}

// topName is the name of the process that used the most CPU, "" if none.
func topName(prev, cur Snapshot, dt float64) string {
	best, name := 0.05*dt, ""
	for pid, c := range cur.Procs {
		if p, ok := prev.Procs[pid]; ok && p.Name == c.Name && c.CPU-p.CPU > best {
			best, name = c.CPU-p.CPU, c.Name
		}
	}
	return name
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

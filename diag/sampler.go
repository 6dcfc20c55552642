package diag

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/net"
	"github.com/shirou/gopsutil/v4/process"
)

// Sampler reads the machine through gopsutil. It is safe for concurrent use.
type Sampler struct{}

// Sample takes one Snapshot.
func (Sampler) Sample(ctx context.Context) (Snapshot, error) {
	s := Snapshot{At: time.Now(), Disks: map[string]DiskIO{}, Nets: map[string]NetIO{}}
	times, err := cpu.TimesWithContext(ctx, true)
	if err != nil {
		return s, fmt.Errorf("read cpu times: %w", err)
	}
	for _, t := range times {
		busy := t.User + t.System + t.Nice + t.Irq + t.Softirq + t.Steal
		s.Cores = append(s.Cores, CPUTimes{Busy: busy, Idle: t.Idle, Iowait: t.Iowait})
	}
	if l, err := load.AvgWithContext(ctx); err == nil {
		s.Load1 = l.Load1
	}
	if io, err := disk.IOCountersWithContext(ctx); err == nil {
		for name, c := range io {
			if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
				continue
			}
			s.Disks[name] = DiskIO{ReadBytes: c.ReadBytes, WriteBytes: c.WriteBytes, Reads: c.ReadCount, Writes: c.WriteCount, IOTimeMs: c.IoTime,
				WeightedMs: c.WeightedIO}
		}
	}
	if io, err := net.IOCountersWithContext(ctx, true); err == nil {
		for _, c := range io {
			if c.Name == "lo" {
				continue
			}
			s.Nets[c.Name] = NetIO{BytesSent: c.BytesSent, BytesRecv: c.BytesRecv, SpeedMbps: linkSpeed(c.Name)}
		}
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		s.MemTotal, s.MemAvailable = vm.Total, vm.Available
	}
	if sw, err := mem.SwapMemoryWithContext(ctx); err == nil {
		s.SwapIn, s.SwapOut = sw.Sin, sw.Sout
	}
	if procs, err := process.ProcessesWithContext(ctx); err == nil {
		s.Procs = make(map[int32]Proc, len(procs))
		for _, p := range procs {
			name, err := p.NameWithContext(ctx)
			if err != nil {
				continue
			}
			u := Proc{Name: name}
			if t, err := p.TimesWithContext(ctx); err == nil {
				u.CPU = t.User + t.System
			}
			var chars uint64
			if io, err := p.IOCountersWithContext(ctx); err == nil {
				u.IO, chars = io.DiskReadBytes+io.DiskWriteBytes, io.ReadBytes+io.WriteBytes
			}
			s.Procs[p.Pid] = u
			if name == "rsync" {
				s.RsyncCount++
				s.RsyncCPU += u.CPU
				s.RsyncIO += chars
			}
		}
	}
	return s, nil
}

// linkSpeed reads an interface's speed in Mb/s from sysfs; 0 when unknown
// (virtual interfaces report -1 or nothing).
func linkSpeed(name string) int {
	b, err := os.ReadFile("/sys/class/net/" + name + "/speed")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

package diag

import (
	"context"
	"time"
)

// Monitor samples the machine every interval until ctx ends and hands fn
// each verdict, with whether its bottleneck differs from the one before;
// queue says what the queue holds at that moment. It returns an error only
// when the machine cannot be sampled at all.
func Monitor(ctx context.Context, interval time.Duration, queue func(context.Context) Queue, fn func(v Verdict, changed bool)) error {
	var s Sampler
	prev, err := s.Sample(ctx)
	if err != nil {
		return err
	}
	last := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		cur, err := s.Sample(ctx)
		if err != nil {
			continue
		}
		cur.Peaks = prev.Peaks // what the disks showed before this interval
		v := Diagnose(prev, cur, queue(ctx))
		cur.Peaks = peaks(prev, cur)
		prev = cur
		fn(v, v.Bottleneck != last)
		last = v.Bottleneck
	}
}

// peaks is the most MB/s each disk has shown: prev's, raised by what it
// did between prev and cur.
func peaks(prev, cur Snapshot) map[string]float64 {
	out := map[string]float64{}
	for name, mbps := range prev.Peaks {
		out[name] = mbps
	}
	dt := cur.At.Sub(prev.At).Seconds()
	if dt <= 0 {
		return out
	}
	for name, c := range cur.Disks {
		if p, ok := prev.Disks[name]; ok {
			out[name] = max(out[name], float64((c.ReadBytes-p.ReadBytes)+(c.WriteBytes-p.WriteBytes))/dt/1e6)
		}
	}
	return out
}

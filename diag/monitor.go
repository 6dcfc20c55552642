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
		v := Diagnose(prev, cur, queue(ctx))
		prev = cur
		fn(v, v.Bottleneck != last)
		last = v.Bottleneck
	}
}

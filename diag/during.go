package diag

import (
	"context"
	"io"
	"os"
	"os/exec"
	"time"
)

// During samples the machine before and after a run of argv (its output
// to out), or over d when argv is empty. runErr is the command's own
// failure (an *exec.ExitError carries its exit status); err says the
// machine could not be sampled or ctx ended.
func During(ctx context.Context, d time.Duration, argv []string, out io.Writer) (prev, cur Snapshot, runErr, err error) {
	var s Sampler
	if prev, err = s.Sample(ctx); err != nil {
		return prev, cur, nil, err
	}
	if len(argv) > 0 {
		c := exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, out, out
		runErr = c.Run()
	} else {
		select {
		case <-ctx.Done():
			return prev, cur, nil, ctx.Err()
		case <-time.After(d):
		}
	}
	cur, err = s.Sample(ctx)
	return prev, cur, runErr, err
}

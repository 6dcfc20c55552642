package cptest

import (
	"os/exec"
	"testing"
	"time"

	"github.com/syncer/syncer/reconcile"
)

func TestWalk(t *testing.T) {
	for _, c := range []int{2, 4, 16} {
		exec.Command("sh", "-c", "cd /var/tmp/rb/skewed && rsync -a --delete --modify-window=-1 src/ dst/; python3 /tmp/mutate.py; sync; echo 3 > /proc/sys/vm/drop_caches").Run()
		t0 := time.Now()
		p, err := reconcile.Walk(t.Context(), reconcile.Options{Source: "/var/tmp/rb/skewed/src", Dest: "/var/tmp/rb/skewed/dst", Concurrency: c})
		t.Log(c, time.Since(t0), len(p.Scopes), err)
	}
}

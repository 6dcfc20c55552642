package reconcile_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/syncer/syncer/reconcile"
)

// BenchmarkWalk compares two equal trees of 10,000 files (warm cache) at
// several concurrency levels.
func BenchmarkWalk(b *testing.B) {
	src, dst := b.TempDir(), b.TempDir()
	for i := range 10000 {
		d := filepath.Join(src, fmt.Sprintf("p%d/s%d", i%8, i%320))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if out, err := exec.Command("rsync", "-a", "--modify-window=-1", src+"/", dst+"/").CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	for _, c := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", c), func(b *testing.B) {
			for range b.N {
				p, err := reconcile.Walk(b.Context(), reconcile.Options{Source: src, Dest: dst, Concurrency: c})
				if err != nil || len(p.Scopes) != 0 {
					b.Fatalf("%v %v", err, p.Scopes)
				}
			}
		})
	}
}

package versions_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/versions"
)

// BenchmarkList_100k lists a project with 100,000 kept versions (1,000
// runs of 100 files each, with their manifests) and reports what the
// manifests cost per version.
//
//	go test -run '^$' -bench List_100k -benchtime 5x ./versions
func BenchmarkList_100k(b *testing.B) {
	dst := b.TempDir()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for run := range 1000 {
		stamp := versions.Stamp(t0.Add(time.Duration(run) * time.Minute))
		dir := filepath.Join(dst, ".trash", stamp, "p", "renders", fmt.Sprintf("shot%03d", run%50))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("frame%05d.exr", run*100+f)), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	root, err := osx.OpenRoot(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	ents, _ := os.ReadDir(filepath.Join(dst, ".trash"))
	var manifests int64
	for _, e := range ents {
		if e.IsDir() {
			if err := versions.Record(root, ".trash", e.Name()); err != nil {
				b.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dst, ".trash", versions.Manifest(e.Name())))
			if err != nil {
				b.Fatal(err)
			}
			manifests += fi.Size()
		}
	}
	b.ResetTimer()
	for range b.N {
		vs, err := versions.List(root, ".trash", "p")
		if err != nil || len(vs) != 100000 {
			b.Fatalf("%d versions, %v", len(vs), err)
		}
	}
	b.ReportMetric(float64(manifests)/100000, "manifest-bytes/version")
}

package rsync_test

import (
	"testing"

	"github.com/syncer/syncer/rsync"
)

func TestExitError_Reason(t *testing.T) {
	for _, tt := range []struct{ name, stderr, want string }{
		{"disk full", "rsync: [receiver] write failed on \"/b/p/big\": No space left on device (28)\n" +
			"rsync error: error in file I/O (code 11) at receiver.c(381) [receiver=3.2.7]\n",
			`rsync: [receiver] write failed on "/b/p/big": No space left on device (28)`},
		{"last three kept in order", "a\nb\nc\nd\nrsync error: x (code 23)\n", "b; c; d"},
		{"summary only", "rsync error: some files could not be transferred (code 23)\n", ""},
		{"nothing", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := &rsync.ExitError{Code: 11, Stderr: tt.stderr}
			if got := e.Reason(); got != tt.want {
				t.Errorf("Reason() = %q, want %q", got, tt.want)
			}
			want := "rsync: exit 11 (error in file I/O)"
			if tt.want != "" {
				want += ": " + tt.want
			}
			if got := e.Error(); got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
}

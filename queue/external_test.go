package queue

import "testing"

func TestAtLeast(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want bool
	}{{"2.9.10", false}, {"2.10.99", false}, {"2.11.0", true}, {"2.15.2", true}, {"3.0.0", true}, {"2.11.0-beta.1", true}} {
		if got := atLeast(tt.v, MinServerVersion); got != tt.want {
			t.Errorf("atLeast(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

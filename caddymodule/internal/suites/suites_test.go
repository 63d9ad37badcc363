package suites

import (
	"testing"
)

// TestSkipShort runs SkipShort in a subtest and reports whether that subtest
// was skipped, which must follow -short exactly.
func TestSkipShort(t *testing.T) {
	var skipped bool
	t.Run(Tailnet, func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		SkipShort(t, Tailnet)
	})
	if skipped != testing.Short() {
		t.Errorf("SkipShort skipped = %v with -short = %v", skipped, testing.Short())
	}
}

func TestInCI(t *testing.T) {
	tests := []struct {
		ci   string
		want bool
	}{{"true", true}, {"1", true}, {"TRUE", true}, {"false", false}, {"", false}, {"yes", false}}
	for _, tt := range tests {
		t.Setenv("CI", tt.ci)
		if got := InCI(); got != tt.want {
			t.Errorf("InCI() with CI=%q = %v, want %v", tt.ci, got, tt.want)
		}
	}
}

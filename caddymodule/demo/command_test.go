package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestMainArguments checks what the command does before it starts anything:
// help on -h, and exit status 2 with a reason for what it does not take.
func TestMainArguments(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  []string // in stderr
	}{
		{"help", []string{"-h"}, 0, []string{"go run ./cmd/clawgate-demo", "-stand-in", "-json", "-verbose"}},
		{"unknown flag", []string{"-browserx"}, 2, []string{"flag provided but not defined: -browserx"}},
		{"an argument", []string{"alice"}, 2, []string{`unexpected argument "alice"`}},
		{"an argument after flags", []string{"-stand-in", "demo"}, 2, []string{`unexpected argument "demo"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("Main(%q) = %d, want %d; stderr:\n%s", tt.args, code, tt.wantCode, &stderr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("Main(%q): stderr lacks %q:\n%s", tt.args, w, &stderr)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("Main(%q) wrote to stdout: %q", tt.args, &stdout)
			}
		})
	}
}

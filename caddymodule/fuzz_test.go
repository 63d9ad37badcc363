package caddymodule

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile feeds arbitrary directive bodies to the guard's
// Caddyfile parser: it may refuse them, but never panic, and whatever it accepts
// must survive provisioning checks without panicking either.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.caddyfiletest")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		input, _, _ := splitGolden(string(data))
		f.Add(input)
	}
	f.Add("clawgate 127.0.0.1:1 {\n allow anyone\n}")
	f.Add("clawgate {\n upstream 127.0.0.1:1\n token a {\n sha256 00\n}\n allow token:a scopes a,b\n}")
	f.Add("clawgate {\n jwt {\n algorithms none\n leeway -5s\n max_length 0\n}\n}")
	f.Add("clawgate {\n rate_limit {\n failures x\n}\n}")
	f.Fuzz(func(t *testing.T, input string) {
		d := fuzzDispenser(input)
		for d != nil && d.Next() {
			if d.Val() != "clawgate" {
				continue
			}
			seg := d.NewFromNextSegment()
			h := new(Handler)
			_, _ = h.unmarshal(seg)
			if h.Upstream != "" {
				_, _ = parseUpstream(h.Upstream)
			}
		}
	})
}

// fuzzDispenser tokenizes input as Caddy's adapter does, or returns nil when
// the tokenizer refuses it (the adapter stops there, before any directive is
// parsed). caddyfile.NewTestDispenser would log.Fatal on such input (a bad
// heredoc marker, say) and kill the fuzzing process: the 10-minute runs found
// exactly that.
func fuzzDispenser(input string) *caddyfile.Dispenser {
	tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
	if err != nil {
		return nil
	}
	return caddyfile.NewDispenser(tokens)
}

package json5

import (
	"os"
	"testing"
)

// benchConfig is the audit's benchmark config: a realistic openclaw.json.
const benchConfig = "../audit/testdata/bench/openclaw.json"

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile(benchConfig)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("openclaw.json", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseTree(b *testing.B) {
	data, err := os.ReadFile(benchConfig)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTree("openclaw.json", data); err != nil {
			b.Fatal(err)
		}
	}
}

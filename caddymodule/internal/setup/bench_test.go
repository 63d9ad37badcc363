package setup

import (
	"os"
	"testing"
)

// BenchmarkParseDoc measures what every edit costs in parsing: the file
// parsed with its spans and its tree decoded, as commit does for the text
// before and after the edit.
func BenchmarkParseDoc(b *testing.B) {
	data, err := os.ReadFile("../audit/testdata/bench/openclaw.json")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		d, err := parseDoc("openclaw.json", data)
		if err != nil {
			b.Fatal(err)
		}
		if d.root.Decode() == nil {
			b.Fatal("no tree")
		}
	}
}

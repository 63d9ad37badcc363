package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestMutationSweep(t *testing.T) {
	files, _ := filepath.Glob("/tmp/schema-work/" + os.Getenv("SWEEP") + "/*/expected.json")
	agree := 0
	for _, f := range files {
		var want validateResult
		data, _ := os.ReadFile(f)
		if err := json.Unmarshal(data, &want); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		got := validateCorpusCase(t, filepath.Dir(f))
		if w, g := pathSet(want.Issues), pathSet(got); reflect.DeepEqual(w, g) {
			agree++
		} else {
			t.Errorf("%s: ours %q real %q\n   ours: %v\n   real: %v", filepath.Base(filepath.Dir(f)), g, w, got, want.Issues)
		}
	}
	t.Logf("agree %d/%d", agree, len(files))
}

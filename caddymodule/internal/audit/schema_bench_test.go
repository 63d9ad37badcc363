package audit

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"
)

// loadBenchConfig loads testdata/bench as BenchmarkAudit does.
func loadBenchConfig(b *testing.B) *Config {
	b.Helper()
	state := filepath.Join(b.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		b.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "bench", "*"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no bench config: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, filepath.Base(f)), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	env := map[string]string{"HOME": b.TempDir(), "OPENCLAW_STATE_DIR": state, "OPENCLAW_CONFIG_PATH": filepath.Join(state, "openclaw.json")}
	for k, v := range benchEnv {
		env[k] = v
	}
	cfg, err := Load(LoadOptions{Env: EnvMap(env), Home: env["HOME"]})
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkValidate measures what the gate adds to each audit: checking the
// realistic bench config (already loaded) against OpenClaw's compiled
// schema and refinements. BenchmarkAudit, on the same config, is the
// baseline it is compared with.
func BenchmarkValidate(b *testing.B) {
	cfg := loadBenchConfig(b)
	s, err := LoadSchema(DefaultSchemaVersion)
	if err != nil {
		b.Fatal(err)
	}
	if issues := s.Validate(cfg.Tree); len(issues) != 0 {
		b.Fatalf("the bench config does not validate: %v", issues)
	}
	b.ReportAllocs()
	for b.Loop() {
		if issues := s.Validate(cfg.Tree); len(issues) != 0 {
			b.Fatal(issues)
		}
	}
}

// BenchmarkSchemaCompile measures the one-time cost of decompressing and
// compiling each recorded schema, and reports the heap a compiled schema
// keeps (retained-B: live heap after a GC with the schema held, minus
// before).
func BenchmarkSchemaCompile(b *testing.B) {
	for _, v := range SchemaVersions() {
		b.Run(v, func(b *testing.B) {
			var retained float64
			b.ReportAllocs()
			for b.Loop() {
				var before, after goruntime.MemStats
				goruntime.GC()
				goruntime.ReadMemStats(&before)
				s, err := compileSchema(v)
				if err != nil {
					b.Fatal(err)
				}
				goruntime.GC()
				goruntime.ReadMemStats(&after)
				retained = float64(after.HeapAlloc) - float64(before.HeapAlloc)
				goruntime.KeepAlive(s)
			}
			b.ReportMetric(retained, "retained-B")
		})
	}
}

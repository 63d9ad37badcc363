package audit

import (
	"os"
	"path/filepath"
	"testing"
)

// benchEnv must match bench_env in scripts/audit-corpus.sh, which times the
// real CLI on the same config.
var benchEnv = map[string]string{
	"TELEGRAM_BOT_TOKEN": "123456:bench-telegram-token",
	"HOOKS_TOKEN":        "hk_bench_0123456789abcdef0123456789",
}

// BenchmarkAudit measures a full audit of a realistic config: JSON5 parse,
// one $include, env substitution, every check and the filesystem checks.
func BenchmarkAudit(b *testing.B) {
	opts := benchLoadOptions(b)
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := Load(opts)
		if err != nil {
			b.Fatal(err)
		}
		if r := Run(cfg, RunOptions{}); len(r.Findings) == 0 {
			b.Fatal("no findings")
		}
	}
}

// benchLoadOptions lays out the realistic bench config and returns how to
// load it.
func benchLoadOptions(b *testing.B) LoadOptions {
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
	return LoadOptions{Env: EnvMap(env), Home: env["HOME"]}
}

package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
)

// TestAgainstRealCLI runs the real `openclaw security audit --json` next to
// Run on configs that are not in the recorded corpus, so a change to the
// checks cannot be tuned to the recordings alone. It skips when OpenClaw is
// not installed (scripts/openclaw.sh install) and fails under CI=true.
func TestAgainstRealCLI(t *testing.T) {
	openclawtest.Require(t)
	bench, err := os.ReadFile(filepath.Join("testdata", "bench", "openclaw.json"))
	if err != nil {
		t.Fatal(err)
	}
	benchTools, err := os.ReadFile(filepath.Join("testdata", "bench", "tools.json5"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files map[string]string
		modes map[string]os.FileMode
		env   map[string]string
	}{
		{
			name:  "realistic config with include",
			files: map[string]string{"openclaw.json": string(bench), "tools.json5": string(benchTools)},
			env:   benchEnv,
		},
		{
			name: "clawgate gateway gone wrong",
			files: map[string]string{
				"openclaw.json": strings.TrimSuffix(strings.Replace(goodGateway, "allowLoopback: true", "allowLoopback: true, deviceAutoApprove: {enabled: true, scopes: ['operator.admin']}", 1), "}") +
					`, tools: {exec: {mode: 'full'}, elevated: {allowFrom: {telegram: ['*']}}}, hooks: {enabled: true, token: 'short', path: '/'}, channels: {telegram: {botToken: '1:a', groupPolicy: 'open'}}, discovery: {mdns: {mode: 'full'}}}`,
				"credentials/x.json": "{}",
			},
			modes: map[string]os.FileMode{"openclaw.json": 0o644, "credentials": 0o755, ".": 0o750},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(root, "state")
			writeTree(t, state, tt.files)
			chmod(t, state, 0o700)
			for rel, mode := range tt.modes {
				chmod(t, filepath.Join(state, rel), mode)
			}
			configPath := filepath.Join(state, "openclaw.json")
			// npm points nowhere, as in scripts/audit-corpus.sh: no plugin installs.
			realEnv := []string{"npm_config_registry=http://127.0.0.1:9/", "npm_config_fetch_retries=0"}
			ourEnv := map[string]string{"HOME": filepath.Join(root, "home"), "OPENCLAW_STATE_DIR": state, "OPENCLAW_CONFIG_PATH": configPath}
			for k, v := range tt.env {
				realEnv = append(realEnv, k+"="+v)
				ourEnv[k] = v
			}
			for _, k := range []string{"OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD", "OPENCLAW_INCLUDE_ROOTS", "OPENCLAW_OAUTH_DIR", "OPENCLAW_WORKSPACE_DIR"} {
				if v, ok := os.LookupEnv(k); ok {
					ourEnv[k] = v // the real CLI inherits the test's environment
				}
			}
			var want Report
			if err := json.Unmarshal(openclawtest.Audit(t, configPath, state, realEnv), &want); err != nil {
				t.Fatalf("real audit JSON: %v", err)
			}
			cfg, err := Load(LoadOptions{Env: EnvMap(ourEnv), Home: ourEnv["HOME"]})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := Run(cfg, RunOptions{})
			t.Logf("real CLI: %d findings %+v", len(want.Findings), want.Summary)
			if g, w := findingIDs(got.Findings), findingIDs(want.Findings); !reflect.DeepEqual(g, w) {
				t.Errorf("Run findings differ from the real CLI:\n got %q\nwant %q", g, w)
			}
			for i := range min(len(got.Findings), len(want.Findings)) {
				if got.Findings[i].Title != want.Findings[i].Title {
					t.Errorf("finding %d title %q, real CLI %q", i, got.Findings[i].Title, want.Findings[i].Title)
				}
			}
		})
	}
}

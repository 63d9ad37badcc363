package audit

import "testing"

func TestPluginAllowed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		plugins map[string]any
		want    bool
	}{
		{"no plugins section", nil, true},
		{"plugins off", map[string]any{"enabled": false}, false},
		{"denied", map[string]any{"deny": []any{" Acme "}}, false},
		{"allowed", map[string]any{"allow": []any{"ACME"}}, true},
		{"not in the allow list", map[string]any{"allow": []any{"other"}}, false},
		{"empty allow list", map[string]any{"allow": []any{" "}}, true},
		{"entry disabled", map[string]any{"entries": map[string]any{" Acme": map[string]any{"enabled": false}}}, false},
		{"entry enabled", map[string]any{"entries": map[string]any{"acme": map[string]any{"enabled": true}}}, true},
		{"deny wins over allow", map[string]any{"allow": []any{"acme"}, "deny": []any{"acme"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := map[string]any{}
			if tc.plugins != nil {
				tree["plugins"] = tc.plugins
			}
			if got := newRuntime(&Config{Tree: tree}).pluginAllowed("acme"); got != tc.want {
				t.Errorf("pluginAllowed(acme) = %v, want %v", got, tc.want)
			}
		})
	}
}

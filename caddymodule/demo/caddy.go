package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile" // the Caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"      // reverse_proxy and the rest of a standard Caddy

	"github.com/clawgate/clawgate/caddymodule"
)

// ProcessCaddy is Caddy in this process, with clawgate's modules.
type ProcessCaddy struct {
	// Verbose keeps Caddy's logs, at INFO, on stderr; otherwise they are
	// discarded: the table is the demo's output.
	Verbose bool
}

// Start adapts and loads the Caddyfile with the demo's adjustments: logs
// discarded unless verbose, no autosaved config, and storage under dataDir
// so nothing lands in the user's Caddy data dir.
func (p *ProcessCaddy) Start(caddyfile, dataDir string) error {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting the demo's Caddyfile: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		return fmt.Errorf("adapting the demo's Caddyfile: %w", err)
	}
	writer := map[string]any{"output": "discard"}
	level := "ERROR"
	if p.Verbose {
		writer = map[string]any{"output": "stderr"}
		level = "INFO"
	}
	m["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"writer": writer, "level": level}}}
	admin, _ := m["admin"].(map[string]any)
	if admin == nil {
		admin = map[string]any{}
	}
	admin["config"] = map[string]any{"persist": false}
	m["admin"] = admin
	m["storage"] = map[string]any{"module": "file_system", "root": dataDir}
	cfg, err = json.Marshal(m)
	if err != nil {
		return fmt.Errorf("adapting the demo's Caddyfile: %w", err)
	}
	if !p.Verbose {
		// Caddy starts out logging INFO to stderr, and some of what a
		// config sets up logs through that logger before the config's own
		// logging takes over (a clawgate node's first lines, Caddy's
		// "redirected default logger"). A first config that keeps stderr
		// but raises the level silences them: with the writer unchanged,
		// Caddy does not announce the switch.
		quiet := []byte(`{"admin":{"disabled":true,"config":{"persist":false}},"logging":{"logs":{"default":{"level":"ERROR"}}}}`)
		if err := caddy.Load(quiet, true); err != nil {
			return fmt.Errorf("loading Caddy: %w", err)
		}
	}
	if err := caddy.Load(cfg, true); err != nil {
		return fmt.Errorf("loading Caddy: %w", err)
	}
	return nil
}

// Stop stops Caddy and waits for its clawgate nodes to close: a node writes
// its state while closing, and the demo removes the directories right after.
func (p *ProcessCaddy) Stop() error {
	err := caddy.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if werr := caddymodule.WaitNodesClosed(ctx); werr != nil {
		err = errors.Join(err, fmt.Errorf("30s after Caddy stopped: %w", werr))
	}
	return err
}

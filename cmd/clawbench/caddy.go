package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/clawgate/clawgate/caddymodule"
)

// sites are the ports and settings the Caddyfile is built from.
type sites struct {
	backend                   string // host:port of the backend
	plainPort, guardPort      int    // loopback sites
	guardOnlyPort             int    // loopback: the guard alone, then a plain reverse_proxy
	tailnet                   bool   // add the tailnet sites and the clawgate app
	controlURL, stateDir      string
	tsPlainPort, tsGuardPort  int
	login                     string // the tailnet client's login
	tokenEnv, hmacEnv, edPath string
}

// caddyfile is the benchmark's whole Caddy config: every site of the run is
// served by one Caddy, loaded once. On loopback the guard refuses loopback
// clients (OpenClaw could not attribute them), so Caddy trusts 127.0.0.1 as a
// fronting proxy and takes the client address from X-Real-IP, which the
// load generator sets; the plain sites get the same server options, so both
// sides of each ratio run under the same config.
func (s sites) caddyfile() string {
	var b strings.Builder
	fmt.Fprintf(&b, `{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
`)
	if s.tailnet {
		fmt.Fprintf(&b, `	clawgate {
		node gw {
			control_url %s
			state_dir %s
			ephemeral
		}
	}
`, s.controlURL, s.stateDir)
	}
	guard := fmt.Sprintf(`
		gateway bench
		token bench {
			secret {env.%s}
		}
		jwt {
			algorithms HS256 EdDSA
			hmac_secret {env.%s}
			public_key_file %s
			issuer https://issuer.bench
			audience clawgate
		}
		allow token:bench scopes operator.read,operator.write
		allow jwt scopes operator.read`, s.tokenEnv, s.hmacEnv, s.edPath)
	fmt.Fprintf(&b, `}

# plain Caddy on loopback
http://127.0.0.1:%d {
	bind 127.0.0.1
	reverse_proxy %s
}

# clawgate on loopback, the shortcut form (guard + reverse_proxy through the
# clawgate transport, which sets the identity headers again on the outgoing
# request): a static token, HS256 and EdDSA JWTs
http://127.0.0.1:%d {
	bind 127.0.0.1
	clawgate %s {%s
	}
}

# the guard alone, followed by a plain reverse_proxy
http://127.0.0.1:%d {
	bind 127.0.0.1
	clawgate {
		upstream %s%s
	}
	reverse_proxy %s
}
`, s.plainPort, s.backend, s.guardPort, s.backend, guard, s.guardOnlyPort, s.backend, guard, s.backend)
	if s.tailnet {
		fmt.Fprintf(&b, `
# plain Caddy site on the tailnet node (what caddy-tailscale does)
http://:%d {
	bind clawgate/gw
	reverse_proxy %s
}

# clawgate on the tailnet node with a device-identity rule
http://:%d {
	bind clawgate/gw
	clawgate %s {
		gateway bench-tailnet
		allow user:%s scopes operator.read,operator.write
	}
}
`, s.tsPlainPort, s.backend, s.tsGuardPort, s.backend, s.login)
	}
	return b.String()
}

// loadCaddy adapts a Caddyfile and runs it in this process, as `caddy run`
// would, with error-only logs and no autosaved config.
func loadCaddy(caddyfile string) error {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting the Caddyfile: %w", err)
	}
	if cfg, err = quiet(cfg); err != nil {
		return err
	}
	if err := caddy.Load(cfg, true); err != nil {
		return fmt.Errorf("loading Caddy: %w", err)
	}
	return nil
}

// quiet sets the default log to errors only (logging every request would
// measure the logger) and keeps Caddy from persisting the config.
func quiet(cfg []byte) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		return nil, fmt.Errorf("reading the adapted config: %w", err)
	}
	m["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}}
	admin, _ := m["admin"].(map[string]any)
	if admin == nil {
		admin = map[string]any{}
	}
	admin["config"] = map[string]any{"persist": false}
	m["admin"] = admin
	return json.Marshal(m)
}

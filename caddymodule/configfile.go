package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// userConfig is the user's Caddy config as `caddy run` would load it.
type userConfig struct {
	// File is the config file read; empty when there was none to read (no
	// --config and no Caddyfile in the working directory).
	File string
	// JSON is the config in Caddy's native form, adapted when it was not.
	JSON []byte
}

// readUserConfig loads the config every `caddy clawgate` command reads with
// Caddy's own loader, so the adapter is chosen the same way (--adapter, else
// caddyfile for a file named Caddyfile* or *.caddyfile, else JSON), {$VAR} is
// expanded at adapt time, and without --config the Caddyfile in the working
// directory is used.
func readUserConfig(path, adapter string) (*userConfig, error) {
	data, file, _, err := caddycmd.LoadConfig(path, adapter)
	if err != nil {
		return nil, fmt.Errorf("reading Caddy config: %w", err)
	}
	return &userConfig{File: file, JSON: data}, nil
}

// maxPlaceholderFile is how much of a {file.*} placeholder's file Caddy reads.
const maxPlaceholderFile = 1 << 20

// resolveSetting resolves the placeholders of one setting outside a request,
// as Caddy's replacer does when the config is provisioned ({env.*},
// {file.*}, {system.*}). Unlike a running Caddy, which turns what it cannot
// resolve into an empty string or leaves it in place, it reports an unset or
// empty variable, an unreadable file and a placeholder that has no value
// outside a request as an error naming the setting (field) and the
// placeholder.
func resolveSetting(field, value string) (string, error) {
	if !strings.ContainsAny(value, "{}") {
		return value, nil
	}
	var sb strings.Builder
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == '\\' && i+1 < len(value) && (value[i+1] == '{' || value[i+1] == '}') {
			sb.WriteByte(value[i+1])
			i++
			continue
		}
		if c != '{' {
			sb.WriteByte(c)
			continue
		}
		end := strings.IndexByte(value[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("%s: %q has an unclosed placeholder", field, value)
		}
		key := value[i+1 : i+end]
		got, err := placeholderValue(key)
		if err != nil {
			return "", fmt.Errorf("%s: placeholder {%s}: %w", field, key, err)
		}
		sb.WriteString(got)
		i += end
	}
	return sb.String(), nil
}

// placeholderValue is the value of one placeholder (without braces) outside a
// request, or why it has none.
func placeholderValue(key string) (string, error) {
	if name, ok := strings.CutPrefix(key, "env."); ok {
		v, set := os.LookupEnv(name)
		switch {
		case !set:
			return "", fmt.Errorf("the environment variable %s is not set", name)
		case v == "":
			return "", fmt.Errorf("the environment variable %s is empty", name)
		}
		return v, nil
	}
	if name, ok := strings.CutPrefix(key, "file."); ok {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		defer f.Close()
		body, err := io.ReadAll(io.LimitReader(f, maxPlaceholderFile))
		if err != nil {
			return "", err
		}
		body = bytes.TrimSuffix(body, []byte("\n"))
		body = bytes.TrimSuffix(body, []byte("\r"))
		if len(body) == 0 {
			return "", errors.New("the file is empty")
		}
		return string(body), nil
	}
	if strings.HasPrefix(key, "system.") {
		if v, ok := caddy.NewReplacer().Get(key); ok {
			if s := fmt.Sprint(v); s != "" {
				return s, nil
			}
			return "", errors.New("it is empty on this machine")
		}
	}
	return "", errors.New("it has no value outside a request (use {env.*}, {file.*} or {$VAR})")
}

// gatewayLoadOptions is where a gateway block's OpenClaw config and state dir
// are, with their placeholders resolved; the gate and `setup` both use it, so
// the command reads the file the running gate audits.
func gatewayLoadOptions(name string, gc *GatewayConfig) (audit.LoadOptions, error) {
	field := "clawgate.gateways." + name
	configPath, err := resolveSetting(field+".config", gc.Config)
	if err != nil {
		return audit.LoadOptions{}, err
	}
	stateDir, err := resolveSetting(field+".state_dir", gc.StateDir)
	if err != nil {
		return audit.LoadOptions{}, err
	}
	return audit.LoadOptions{ConfigPath: configPath, StateDir: stateDir}, nil
}

// gatewayVersionSettings is a gateway block's openclaw_version and the
// package.json that openclaw_package names, with their placeholders resolved
// and the version checked; the gate and `setup` both use it, so both assume
// the same OpenClaw line.
func gatewayVersionSettings(name string, gc *GatewayConfig) (version, pkgFile string, err error) {
	field := "clawgate.gateways." + name
	if version, err = resolveSetting(field+".openclaw_version", gc.OpenClawVersion); err != nil {
		return "", "", err
	}
	if version != "" {
		if _, err := release.Parse(version); err != nil {
			return "", "", fmt.Errorf("%s.openclaw_version: %w", field, err)
		}
	}
	pkg, err := resolveSetting(field+".openclaw_package", gc.OpenClawPackage)
	if err != nil || pkg == "" {
		return version, "", err
	}
	return version, release.PackageFile(pkg), nil
}

// adminAddress is the admin endpoint a command talks to: the flag's, else the
// one in the config `caddy run` would load (--config, else ./Caddyfile), else
// Caddy's default.
func adminAddress(flag, path, adapter string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	uc, err := readUserConfig(path, adapter)
	if err != nil {
		return "", err
	}
	return caddycmd.DetermineAdminAPIAddress("", uc.JSON, uc.File, adapter)
}

// runAuditGateways audits, for `caddy clawgate audit --config`, the OpenClaw
// config of each gateway block in the Caddy config (or only the one named) at
// the paths the running gate audits; the exit status is the worst.
func runAuditGateways(out io.Writer, caddyfile, adapter, only, failOn string, asJSON bool) (int, error) {
	cfgJSON, err := loadCaddyJSON(caddyfile, adapter)
	if err != nil {
		return 2, err
	}
	var root struct {
		Apps struct {
			Clawgate *App `json:"clawgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &root); err != nil {
		return 2, fmt.Errorf("reading Caddy config JSON: %w", err)
	}
	var names []string
	if app := root.Apps.Clawgate; app != nil {
		for name := range app.Gateways {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return 2, fmt.Errorf("%s has no clawgate gateway block: nothing to audit", caddyfile)
	}
	if only != "" {
		if !slices.Contains(names, only) {
			return 2, fmt.Errorf("no gateway %q in %s (gateways: %s)", only, caddyfile, strings.Join(names, ", "))
		}
		names = []string{only}
	}
	if asJSON && len(names) > 1 {
		return 2, fmt.Errorf("--json audits one gateway: name it with --gateway (gateways: %s)", strings.Join(names, ", "))
	}
	code := 0
	var errs []error
	for i, name := range names {
		gc := root.Apps.Clawgate.Gateways[name]
		if gc == nil {
			gc = &GatewayConfig{}
		}
		if !asJSON {
			if i > 0 {
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "gateway %q:\n", name)
		}
		lo, err := gatewayLoadOptions(name, gc)
		c := 2
		if err == nil {
			c, err = runAuditCommand(out, lo.ConfigPath, lo.StateDir, failOn, asJSON)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("gateway %q: %w", name, err))
		}
		code = max(code, c)
	}
	return code, errors.Join(errs...)
}

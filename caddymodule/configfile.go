package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
	"github.com/clawgate/clawgate/caddymodule/internal/setup"
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
func runAuditGateways(out, errOut io.Writer, caddyfile, adapter, only, failOn string, asJSON bool) (int, error) {
	uc, err := loadUserConfig(caddyfile, adapter)
	if err != nil {
		return 2, err
	}
	cfgJSON := uc.JSON
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
	guarded, err := setupGateways(cfgJSON)
	if err != nil {
		return 2, err
	}
	paths := askRunningInstance(uc, adapter)
	// The JSON is the audit's own, as 'openclaw security audit --json'
	// prints it: where the paths came from goes beside it.
	note := out
	if asJSON {
		note = errOut
	}
	fmt.Fprintln(note, paths.summary())
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
		lo, pathNote, err := paths.loadOptions(name, gc)
		if pathNote != "" {
			fmt.Fprintf(note, "note: %s\n", pathNote)
		}
		var judge *gateJudgment
		if err == nil {
			judge, err = judgeAsGate(name, gc, guarded[name])
		}
		c := 2
		if err == nil {
			c, err = runAuditCommand(out, lo.ConfigPath, lo.StateDir, failOn, asJSON, judge)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("gateway %q: %w", name, err))
		}
		code = max(code, c)
	}
	return code, errors.Join(errs...)
}

// instanceTimeout bounds the question to a running instance, so a command
// whose admin endpoint hangs still resolves its paths itself.
const instanceTimeout = 5 * time.Second

// gatewayPathSource is where a command takes the gateways' paths from: the
// Caddy instance running the user's config, when its admin endpoint answers,
// since a service's environment (HOME, OPENCLAW_*) can differ from the
// shell's; else this process's own resolution, as the instance would make
// it here.
type gatewayPathSource struct {
	admin   string                  // the admin endpoint asked
	running map[string]gatewayPaths // nil when no instance answered
	why     string                  // why no instance's paths are used
}

// askRunningInstance asks the instance at the admin endpoint of the user's
// config (uc) for the paths it resolved; adapter is the config's --adapter.
func askRunningInstance(uc *userConfig, adapter string) *gatewayPathSource {
	src := &gatewayPathSource{}
	addr, err := caddycmd.DetermineAdminAPIAddress("", uc.JSON, uc.File, adapter)
	if err != nil {
		src.why = fmt.Sprintf("the config's admin address: %v", err)
		return src
	}
	src.admin = addr
	if strings.TrimSpace(addr) == "" {
		src.why = "the config turns the admin endpoint off"
		return src
	}
	type answer struct {
		body []byte
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		body, err := adminCall(addr, http.MethodGet, "/clawgate/gateways", nil)
		ch <- answer{body, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-time.After(instanceTimeout):
		a.err = fmt.Errorf("no answer within %v", instanceTimeout)
	}
	if a.err != nil {
		src.why = fmt.Sprintf("no running Caddy with clawgate answered at %s: %s", addr, strings.TrimPrefix(a.err.Error(), "admin endpoint "+addr+": "))
		return src
	}
	var gateways map[string]struct {
		Paths *gatewayPaths `json:"paths"`
	}
	if err := json.Unmarshal(a.body, &gateways); err != nil {
		src.why = fmt.Sprintf("the Caddy at %s answered what is not clawgate's gateway list (%v)", addr, err)
		return src
	}
	src.running = map[string]gatewayPaths{}
	for name, g := range gateways {
		if g.Paths == nil {
			src.running = nil
			src.why = fmt.Sprintf("the Caddy at %s runs a clawgate that does not report its gateways' paths", addr)
			return src
		}
		src.running[name] = *g.Paths
	}
	return src
}

// summary is the line a command prints about where its paths come from.
func (s *gatewayPathSource) summary() string {
	if s.running != nil {
		return fmt.Sprintf("paths: as the running Caddy at %s resolved them in its own environment", s.admin)
	}
	return "paths: resolved by this command in its own environment; " + s.why
}

// loadOptions is where gateway name's OpenClaw config and state dir are:
// those the running instance resolved when it runs this block's settings,
// else resolved here (gatewayLoadOptions, then OpenClaw's defaults in this
// process's environment). note says so when the instance runs other
// settings for the gateway or none.
func (s *gatewayPathSource) loadOptions(name string, gc *GatewayConfig) (lo audit.LoadOptions, note string, err error) {
	if s.running != nil {
		rp, ok := s.running[name]
		switch {
		case !ok:
			note = fmt.Sprintf("the running Caddy at %s has no gateway %q; its paths are resolved here", s.admin, name)
		case rp.Config.Setting != gc.Config || rp.StateDir.Setting != gc.StateDir:
			note = fmt.Sprintf("the running Caddy at %s runs other settings for gateway %q (config %q, state_dir %q); its paths are resolved here from the file's", s.admin, name, rp.Config.Setting, rp.StateDir.Setting)
		case rp.Config.Error != "":
			return lo, "", fmt.Errorf("clawgate.gateways.%s: the running Caddy at %s cannot resolve its paths: %s", name, s.admin, rp.Config.Error)
		default:
			return audit.LoadOptions{ConfigPath: rp.Config.Resolved, StateDir: rp.StateDir.Resolved}, "", nil
		}
	}
	lo, err = gatewayLoadOptions(name, gc)
	return lo, note, err
}

// gateJudgment is how the running gate judges a gateway's config beyond
// OpenClaw's own audit: clawgate's consistency checks against what the
// gateway's guards send and admit, and the findings it accepts (the block's
// `expect`, and those expected by design once OpenClaw agrees with clawgate).
type gateJudgment struct {
	expect   audit.Expect
	accepted []string
}

// judgeAsGate is the gate's judgment for gateway name: its block gc and
// the guards that name it (g, nil when none does).
func judgeAsGate(name string, gc *GatewayConfig, g *setupGateway) (*gateJudgment, error) {
	j := &gateJudgment{accepted: gc.Expect}
	if g != nil && len(g.in.Guards) > 0 {
		e, err := setup.Derive(g.in)
		if err != nil {
			return nil, fmt.Errorf("gateway %q: %w", name, err)
		}
		j.expect = e.Expect()
		return j, nil
	}
	// No guard names it: the gate still checks what any guard would send.
	port, err := gc.port(name)
	if err != nil {
		return nil, err
	}
	j.expect = audit.Expect{UserHeader: edge.DefaultUserHeader, Origins: gc.Origins, Port: port}
	return j, nil
}

// apply adds the consistency findings to report, with the summary counted
// again, and returns the check IDs accepted.
func (j *gateJudgment) apply(cfg *audit.Config, report audit.Report) (audit.Report, []string) {
	cons := audit.Consistency(cfg, j.expect)
	report.Findings = append(slices.Clone(report.Findings), cons...)
	report.Summary = audit.Summary{}
	for _, f := range report.Findings {
		switch f.Severity {
		case audit.SeverityCritical:
			report.Summary.Critical++
		case audit.SeverityWarn:
			report.Summary.Warn++
		default:
			report.Summary.Info++
		}
	}
	return report, append(slices.Clone(j.accepted), audit.ExpectedByDesign(cons)...)
}

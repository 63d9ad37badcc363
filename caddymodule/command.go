package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "clawgate",
		Usage: "audit|setup|devices|doctor|service [flags] [args]",
		Short: "clawgate's tools for OpenClaw gateways",
		Long: `
clawgate's command-line tools.

  caddy clawgate audit [CONFIG]    audits an OpenClaw openclaw.json the way
                                   'openclaw security audit' does
  caddy clawgate setup [--write]   shows (and with --write makes) the changes
                                   each gateway's openclaw.json needs to agree
                                   with clawgate, keeping a backup
  caddy clawgate devices list|approve|revoke
                                   lists, approves and revokes the tailnet
                                   devices of gateways with pairing required
  caddy clawgate doctor [--json]   checks a running install end to end and
                                   says how to fix each problem
  caddy clawgate service install|uninstall [--user] [--print]
                                   runs this Caddy as a systemd or launchd
                                   service, as the gateway's owner

The offline demo (an in-process tailnet, clawgate and the real OpenClaw) is
a command of its own, so that this binary carries no test code: run
'go run ./cmd/clawgate-demo' in a clawgate checkout.

Each command's help says what its exit status means.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(newAuditCommand(), newSetupCommand(), newDevicesCommand(), newDoctorCommand(), newServiceCommand(), newDemoCommand())
		},
	})
}

// withExitStatus makes a subcommand's RunE from a function that returns an
// exit status, through caddycmd.WrapCommandFuncForCobra as Caddy's own
// subcommands do: caddycmd.Main exits with the status and logs the error,
// prefixed with the command. A wrapped command exits 1 only when an error
// comes with the status, so f says why whenever it returns 1.
func withExitStatus(f func(c *cobra.Command, fl caddycmd.Flags) (int, error)) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			code, err := f(c, fl)
			if code == 1 && err == nil {
				err = errors.New("failed") // f broke its promise; still exit 1
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", c.CommandPath(), err)
			}
			return code, err
		})(c, args)
	}
}

// newAuditCommand is `caddy clawgate audit`.
func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit [--json] [--fail-on critical|warn|info|never] [--state-dir DIR] [CONFIG] | [--config Caddyfile [--gateway NAME]]",
		Short: "Audits an OpenClaw config the way 'openclaw security audit' does",
		Long: `
Audits an OpenClaw gateway's openclaw.json (JSON5, $include and ${VAR} as
OpenClaw reads them) and its state directory's permissions with the checks of
'openclaw security audit' that can be decided without a running gateway.

CONFIG defaults to OpenClaw's own choice: OPENCLAW_CONFIG_PATH, else
<state dir>/openclaw.json, where the state dir is --state-dir,
OPENCLAW_STATE_DIR or ~/.openclaw.

With --config, audits instead the config of each gateway block of that Caddy
config, at the paths a running Caddy resolves ({env.*} and {file.*}
placeholders included; one that cannot be resolved is an error naming the
setting), one table per gateway, and judges it as clawgate's gate does:
clawgate's own checks (clawgate.*) are added, and the findings the gate
accepts (the block's 'expect', and gateway.trusted_proxy_auth and
gateway.trusted_proxy_allow_loopback once OpenClaw agrees with clawgate) do
not fail. When the Caddy running that config answers on its admin endpoint,
the paths are the ones it resolved in its own environment; the output says
which. --json then needs a single gateway.

Output is a table, or with --json the same JSON as 'openclaw security audit
--json'. Unlike the real CLI, the exit status is 1 when a finding at or above
--fail-on (default: critical) is present, so scripts and CI can use it; 2 when
the config cannot be read.
`,
		Args: cobra.MaximumNArgs(1),
	}
	cmd.RunE = withExitStatus(func(c *cobra.Command, fl caddycmd.Flags) (int, error) {
		failOn := fl.String("fail-on")
		var code int
		var err error
		if caddyfile := fl.String("config"); caddyfile != "" {
			if fl.Arg(0) != "" || fl.String("state-dir") != "" {
				return 2, errors.New("--config audits the gateways the Caddy config names: give no CONFIG and no --state-dir with it")
			}
			code, err = runAuditGateways(c.OutOrStdout(), c.ErrOrStderr(), caddyfile, fl.String("adapter"), fl.String("gateway"), failOn, fl.Bool("json"))
		} else {
			code, err = runAuditCommand(c.OutOrStdout(), fl.Arg(0), fl.String("state-dir"), failOn, fl.Bool("json"), nil)
		}
		if code == 1 && err == nil {
			err = fmt.Errorf("a finding at or above --fail-on %s is present", failOn)
		}
		return code, err
	})
	cmd.Flags().Bool("json", false, "print the report as 'openclaw security audit --json' does")
	cmd.Flags().String("fail-on", "critical", "exit 1 when a finding at or above this severity is present: critical, warn, info or never")
	cmd.Flags().String("state-dir", "", "OpenClaw's state directory (default: OPENCLAW_STATE_DIR or ~/.openclaw)")
	cmd.Flags().String("config", "", "audit the gateways this Caddy config names, at the paths a running Caddy resolves")
	cmd.Flags().String("adapter", "", "the Caddy config's adapter (default: as caddy run chooses)")
	cmd.Flags().String("gateway", "", "with --config: only this gateway")
	return cmd
}

// newDemoCommand is `caddy clawgate demo`, which only says where the demo is.
func newDemoCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "demo",
		Short:  "Says where the offline demo is: go run ./cmd/clawgate-demo",
		Hidden: true,
		RunE: withExitStatus(func(*cobra.Command, caddycmd.Flags) (int, error) {
			return 2, errors.New("the demo is not part of this binary, so that it carries no test code: run 'go run ./cmd/clawgate-demo' in a clawgate checkout")
		}),
		DisableFlagParsing: true,
	}
}

// runAuditCommand audits one config and writes the report; it returns the exit
// status: 0 clean, 1 a finding at or above failOn, 2 the config could not be
// audited or a flag is wrong.
//
// With judge, the config is judged as the running gate judges it: clawgate's
// consistency checks are added, and the findings it accepts do not fail.
func runAuditCommand(out io.Writer, configPath, stateDir, failOn string, asJSON bool, judge *gateJudgment) (int, error) {
	level, ok := audit.ParseSeverity(failOn)
	never := strings.EqualFold(failOn, "never")
	if !ok && !never {
		return 2, fmt.Errorf("--fail-on %q: want critical, warn, info or never", failOn)
	}
	cfg, err := audit.Load(audit.LoadOptions{ConfigPath: configPath, StateDir: stateDir})
	if err != nil {
		return 2, err
	}
	// OpenClaw refuses to load a config that does not validate, so there is
	// nothing to audit: say why, as the real CLI does, and fail whatever
	// --fail-on says.
	version := configVersion(cfg)
	var issues []audit.Issue
	var unknown []string
	if audit.UnsupportedVersion(version) {
		unknown, issues, err = audit.ValidateLenient(cfg)
	} else {
		issues, err = audit.ValidateFor(cfg, version)
	}
	if err != nil {
		return 2, fmt.Errorf("validating %s: %w", cfg.Path, err)
	}
	if len(issues) > 0 {
		invalid := audit.NewInvalidConfig(cfg.Path, issues)
		if asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(invalid); err != nil {
				return 2, err
			}
		} else {
			writeInvalidTable(out, invalid)
		}
		return 2, nil
	}
	report := audit.Run(cfg, audit.RunOptions{Line: version.Line})
	if len(unknown) > 0 {
		f := audit.UnknownKeysFinding(version, unknown)
		report.Findings = append(report.Findings, f)
		report.Summary.Warn++
	}
	var accepted []string
	if judge != nil {
		report, accepted = judge.apply(cfg, report)
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return 2, err
		}
	} else {
		writeAuditTable(out, cfg.Path, report, accepted)
		fmt.Fprintf(out, "\nOpenClaw version assumed: %s\n", version.Why)
	}
	if !never && len(report.Blocking(level, accepted)) > 0 {
		return 1, nil
	}
	return 0, nil
}

// configVersion is the OpenClaw line assumed for a config audited on its own:
// its meta.lastTouchedVersion, or none.
func configVersion(cfg *audit.Config) release.Assumed {
	return release.Assume(release.Evidence{Hint: release.ConfigHint(cfg.Tree)})
}

// writeAuditTable prints a report for people; the findings whose check IDs
// are accepted are marked so, and not among those to fix.
func writeAuditTable(out io.Writer, path string, report audit.Report, accepted []string) {
	fmt.Fprintf(out, "OpenClaw security audit of %s\n", path)
	fmt.Fprintf(out, "%d critical · %d warn · %d info\n\n", report.Summary.Critical, report.Summary.Warn, report.Summary.Info)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tCHECK\tTITLE")
	for _, sev := range []audit.Severity{audit.SeverityCritical, audit.SeverityWarn, audit.SeverityInfo} {
		for _, f := range report.Findings {
			if f.Severity == sev {
				tag := ""
				if slices.Contains(accepted, f.CheckID) {
					tag = " (accepted behind clawgate)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s%s\n", f.Severity, f.CheckID, f.Title, tag)
			}
		}
	}
	tw.Flush()
	var fixes []string
	for _, f := range report.Findings {
		if f.Severity == audit.SeverityCritical && f.Remediation != "" && !slices.Contains(accepted, f.CheckID) {
			fixes = append(fixes, fmt.Sprintf("  %s: %s", f.CheckID, firstLine(f.Remediation)))
		}
	}
	if len(fixes) > 0 {
		fmt.Fprintf(out, "\nTo fix the critical findings:\n%s\n", strings.Join(fixes, "\n"))
	}
}

func writeInvalidTable(out io.Writer, invalid audit.InvalidConfig) {
	fmt.Fprintf(out, "%s\n%d issue(s); OpenClaw will not load this file, so it was not audited\n\n", invalid.Error.Message, len(invalid.Issues))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tPROBLEM")
	for _, i := range invalid.Issues {
		fmt.Fprintf(tw, "%s\t%s\n", i.Path, i.Message)
	}
	tw.Flush()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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
		Usage: "audit [--json] [--fail-on critical|warn|info|never] [--state-dir DIR] [CONFIG] | setup [--config Caddyfile] [--gateway NAME] [--write] [--json]",
		Short: "clawgate's tools for OpenClaw gateways",
		Long: `
clawgate's command-line tools.

  caddy clawgate audit [CONFIG]   audits an OpenClaw openclaw.json the way
                                  'openclaw security audit' does
  caddy clawgate setup            shows (and with --write makes) the changes
                                  openclaw.json needs to agree with clawgate
  caddy clawgate demo             an offline tour: tailnet, clawgate and the
                                  real OpenClaw gateway, in one process
  caddy clawgate setup [--write]  makes each gateway's openclaw.json agree
                                  with clawgate (shows the diff; --write
                                  applies it, keeping a backup)
`,
		CobraFunc: func(cmd *cobra.Command) {
			audit := &cobra.Command{
				Use:   "audit [--json] [--fail-on critical|warn|info|never] [--state-dir DIR] [CONFIG]",
				Short: "Audits an OpenClaw config the way 'openclaw security audit' does",
				Long: `
Audits an OpenClaw gateway's openclaw.json (JSON5, $include and ${VAR} as
OpenClaw reads them) and its state directory's permissions with the checks of
'openclaw security audit' that can be decided without a running gateway.

CONFIG defaults to OpenClaw's own choice: OPENCLAW_CONFIG_PATH, else
<state dir>/openclaw.json, where the state dir is --state-dir,
OPENCLAW_STATE_DIR or ~/.openclaw.

Output is a table, or with --json the same JSON as 'openclaw security audit
--json'. Unlike the real CLI, the exit status is 1 when a finding at or above
--fail-on (default: critical) is present, so scripts and CI can use it; 2 when
the config cannot be read.
`,
				Args: cobra.MaximumNArgs(1),
				RunE: func(c *cobra.Command, args []string) error {
					asJSON, _ := c.Flags().GetBool("json")
					failOn, _ := c.Flags().GetString("fail-on")
					stateDir, _ := c.Flags().GetString("state-dir")
					configPath := ""
					if len(args) == 1 {
						configPath = args[0]
					}
					code, err := runAuditCommand(c.OutOrStdout(), configPath, stateDir, failOn, asJSON)
					if err != nil {
						fmt.Fprintln(c.ErrOrStderr(), "clawgate audit:", err)
					}
					if code != 0 {
						os.Exit(code)
					}
					return nil
				},
			}
			audit.Flags().Bool("json", false, "print the report as 'openclaw security audit --json' does")
			audit.Flags().String("fail-on", "critical", "exit 1 when a finding at or above this severity is present: critical, warn, info or never")
			audit.Flags().String("state-dir", "", "OpenClaw's state directory (default: OPENCLAW_STATE_DIR or ~/.openclaw)")
			cmd.AddCommand(audit)
			cmd.AddCommand(newSetupCommand())
			for _, sub := range subcommands {
				cmd.AddCommand(sub())
			}
		},
	})
}

// subcommands are the other `caddy clawgate` subcommands; each file that
// defines one appends its constructor in init.
var subcommands []func() *cobra.Command

// runAuditCommand audits one config and writes the report; it returns the exit
// status: 0 clean, 1 a finding at or above failOn, 2 the config could not be
// audited or a flag is wrong.
func runAuditCommand(out io.Writer, configPath, stateDir, failOn string, asJSON bool) (int, error) {
	level, ok := audit.ParseSeverity(failOn)
	never := strings.EqualFold(failOn, "never")
	if !ok && !never {
		return 2, fmt.Errorf("--fail-on %q: want critical, warn, info or never", failOn)
	}
	cfg, err := audit.Load(audit.LoadOptions{ConfigPath: configPath, StateDir: stateDir})
	if err != nil {
		return 2, err
	}
	report := audit.Run(cfg, audit.RunOptions{})
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return 2, err
		}
	} else {
		writeAuditTable(out, cfg.Path, report)
		fmt.Fprintf(out, "\nOpenClaw version assumed: %s\n", configVersion(cfg).Why)
	}
	if !never && len(report.Blocking(level, nil)) > 0 {
		return 1, nil
	}
	return 0, nil
}

// configVersion is the OpenClaw line assumed for a config audited on its own:
// its meta.lastTouchedVersion, or none.
func configVersion(cfg *audit.Config) release.Assumed {
	return release.Assume(release.Evidence{Hint: release.ConfigHint(cfg.Tree)})
}

func writeAuditTable(out io.Writer, path string, report audit.Report) {
	fmt.Fprintf(out, "OpenClaw security audit of %s\n", path)
	fmt.Fprintf(out, "%d critical · %d warn · %d info\n\n", report.Summary.Critical, report.Summary.Warn, report.Summary.Info)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tCHECK\tTITLE")
	for _, sev := range []audit.Severity{audit.SeverityCritical, audit.SeverityWarn, audit.SeverityInfo} {
		for _, f := range report.Findings {
			if f.Severity == sev {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Severity, f.CheckID, f.Title)
			}
		}
	}
	tw.Flush()
	var fixes []string
	for _, f := range report.Findings {
		if f.Severity == audit.SeverityCritical && f.Remediation != "" {
			fixes = append(fixes, fmt.Sprintf("  %s: %s", f.CheckID, firstLine(f.Remediation)))
		}
	}
	if len(fixes) > 0 {
		fmt.Fprintf(out, "\nTo fix the critical findings:\n%s\n", strings.Join(fixes, "\n"))
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

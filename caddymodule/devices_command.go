package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/clawgate/clawgate/caddymodule/internal/pairing"
)

// newDevicesCommand is `caddy clawgate devices`.
func newDevicesCommand() *cobra.Command {
	var address, config, adapter, gateway string
	var asJSON bool
	runE := func(action string) func(*cobra.Command, []string) error {
		return withExitStatus(func(c *cobra.Command, fl caddycmd.Flags) (int, error) {
			addr, err := adminAddress(address, config, adapter)
			if err != nil {
				return 1, fmt.Errorf("finding the admin endpoint: %w", err)
			}
			if err := runDevicesCommand(c.OutOrStdout(), addr, action, fl.Arg(0), gateway, asJSON); err != nil {
				return 1, err
			}
			return 0, nil
		})
	}
	cmd := &cobra.Command{
		Use:   "devices list|approve <id|code>|revoke <id|code>",
		Short: "Lists, approves and revokes the tailnet devices of gateways with pairing required",
		Long: `
Device pairing: on a gateway with 'pairing required', each tailnet device
must be approved once before it reaches the gateway. A new device is answered
"waiting for approval" with a short pairing code; check that the code shown
on the device matches and approve it here. A device whose node key changes
(a re-registered machine) waits again; revoking a device closes its open
WebSockets. Approvals live in Caddy's storage: every instance sharing it and
the gateway name sees a change within its pairing poll_interval.

The command talks to the running Caddy's admin endpoint: --address, else the
one in the config caddy run would load (--config, else ./Caddyfile), else
localhost:2019. On a unix socket (admin unix//path|0600) the approval records
the operating system user running this command, as the kernel reports it; on
a TCP endpoint, which any local user can reach, it records that the approver
is unverified.
`,
	}
	cmd.PersistentFlags().StringVar(&address, "address", "", "the admin endpoint's address")
	cmd.PersistentFlags().StringVar(&config, "config", "", "read the admin endpoint's address from this config")
	cmd.PersistentFlags().StringVar(&adapter, "adapter", "", "the config's adapter")
	cmd.PersistentFlags().StringVar(&gateway, "gateway", "", "only this gateway")
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists the devices of every gateway with pairing, pending first",
		Args:  cobra.NoArgs,
		RunE:  runE("list"),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the admin API's JSON")
	approve := &cobra.Command{
		Use:   "approve <id|code>",
		Short: "Approves a pending device by its pairing code or ID",
		Args:  cobra.ExactArgs(1),
		RunE:  runE("approve"),
	}
	revoke := &cobra.Command{
		Use:   "revoke <id|code>",
		Short: "Revokes a device's approval and closes its open WebSockets",
		Args:  cobra.ExactArgs(1),
		RunE:  runE("revoke"),
	}
	cmd.AddCommand(list, approve, revoke)
	return cmd
}

// runDevicesCommand performs one `caddy clawgate devices` action against the
// admin endpoint at adminAddr and writes the outcome to out.
func runDevicesCommand(out io.Writer, adminAddr, action, ref, gateway string, asJSON bool) error {
	switch action {
	case "list":
		uri := "/clawgate/devices"
		if gateway != "" {
			uri += "?gateway=" + url.QueryEscape(gateway)
		}
		body, err := adminCall(adminAddr, http.MethodGet, uri, nil)
		if err != nil {
			return err
		}
		if asJSON {
			_, err := out.Write(body)
			return err
		}
		var list devicesList
		if err := json.Unmarshal(body, &list); err != nil {
			return fmt.Errorf("reading the admin endpoint's answer: %w", err)
		}
		writeDevicesTable(out, list)
		return nil
	case "approve", "revoke":
		req, err := json.Marshal(deviceRequest{Device: ref, Gateway: gateway, By: localOperator()})
		if err != nil {
			return err
		}
		body, err := adminCall(adminAddr, http.MethodPost, "/clawgate/devices/"+action, req)
		if err != nil {
			return err
		}
		var res deviceResult
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("reading the admin endpoint's answer: %w", err)
		}
		for _, d := range res.Devices {
			switch {
			case action == "revoke":
				fmt.Fprintf(out, "revoked %s (%s, %s) on gateway %s\n", d.Node, d.ID, d.Login, d.Gateway)
			case res.Changed:
				fmt.Fprintf(out, "approved %s (%s, %s) for gateway %s\n", d.Node, d.ID, d.Login, d.Gateway)
			default:
				fmt.Fprintf(out, "%s (%s, %s) was already approved for gateway %s\n", d.Node, d.ID, d.Login, d.Gateway)
			}
		}
		if res.ClosedWebSockets > 0 {
			fmt.Fprintf(out, "closed %d open WebSocket(s)\n", res.ClosedWebSockets)
		}
		return nil
	}
	return fmt.Errorf("unknown action %q: want list, approve or revoke", action)
}

// adminCall makes one admin API request and returns the body of a successful
// answer, or the admin endpoint's error message.
func adminCall(adminAddr, method, uri string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp, err := caddycmd.AdminAPIRequest(adminAddr, method, uri, nil, rd)
	if err != nil {
		// AdminAPIRequest puts the answer's JSON in its error; show the
		// message alone.
		msg := err.Error()
		if i := strings.Index(msg, "{"); i >= 0 {
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal([]byte(msg[i:]), &e) == nil && e.Error != "" {
				return nil, errors.New(e.Error)
			}
		}
		return nil, fmt.Errorf("admin endpoint %s: %w", adminAddr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin endpoint's answer: %w", err)
	}
	return b, nil
}

func writeDevicesTable(out io.Writer, list devicesList) {
	// Pending first: they are what the operator came for.
	sort.SliceStable(list.Devices, func(i, j int) bool {
		return list.Devices[i].Status == pairing.StatusPending && list.Devices[j].Status != pairing.StatusPending
	})
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tSTATUS\tCODE\tNODE\tLOGIN\tOS\tIPS\tFIRST SEEN\tAPPROVED BY\tID")
	for _, d := range list.Devices {
		status := string(d.Status)
		if d.Reason != "" && d.Reason != pairing.ReasonNew {
			status += " (" + strings.ReplaceAll(string(d.Reason), "_", " ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Gateway, status, dash(d.Code), dash(d.Node), dash(d.Login), dash(d.OS),
			dash(strings.Join(d.IPs, ",")), d.FirstSeen.Local().Format("2006-01-02 15:04"), dash(d.ApprovedBy), d.ID)
	}
	tw.Flush()
	if len(list.Devices) == 0 {
		fmt.Fprintln(out, "no devices yet")
	}
	names := slices.Sorted(maps.Keys(list.Unavailable))
	for _, name := range names {
		fmt.Fprintf(out, "gateway %s: every device is held: %s\n", name, list.Unavailable[name])
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// localOperator names the person running the command. The admin endpoint
// logs it as a claim only: the record holds what the endpoint itself knows.
func localOperator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

// Package tsnet owns the lifecycle of the Tailscale nodes that clawgate runs
// in-process (tailscale.com/tsnet servers): it validates their configuration,
// keeps their state directories private, starts them, hands out tailnet-only
// listeners, answers WhoIs questions with a small cache, serves their *.ts.net
// certificates, and shuts them down completely.
//
// It knows nothing of Caddy; caddymodule wires it in.
//
// # Logs
//
// A tsnet server writes two kinds of log lines: verbose backend lines
// (magicsock, control client, netstack) and a few lines meant for a person
// (state path, login URL). They go to the two Logf functions given to [New].
// Every line passes through a filter that replaces the configured auth key
// (and the TS_AUTHKEY, TS_AUTH_KEY, TS_CLIENT_SECRET and TS_ID_TOKEN values
// tsnet would fall back to) with a short fingerprint, so no secret reaches a
// log even if a future tsnet version prints one. tsnet's own login-URL loop,
// which repeats the URL every few seconds, is silenced; [Node] prints each
// login URL once instead.
//
// # No log upload
//
// Outside tests, tsnet sends its backend logs to Tailscale's log service
// (log.tailscale.com), and keeps a local copy in the state directory
// (tailscaled.log*.txt; tsnet writes it before the lines reach the filter
// above, so it is as private as the rest of the state directory). A
// security gateway should not ship its logs to a third party by default, so
// [Node.Start] turns that off the way tailscaled's --no-logs-no-support flag
// does: it calls envknob.SetNoLogsNoSupport, which sets
// TS_NO_LOGS_NO_SUPPORT=true for the process. logpolicy then gives logtail a
// transport that drops every upload (tailscale.com/logpolicy,
// TransportOptions.New), and the node tells the control server that it runs
// without logs or support. The knob is process-wide and one-way: any other
// tsnet server in the same binary (caddy-tailscale, for example) stops
// uploading too. Tailscale support cannot see the logs of such a node.
package tsnet

// Package service renders the files that run clawgate's Caddy as a service
// (a systemd unit, a launchd property list) and installs them without
// overwriting one a person has changed.
//
// The service runs as the gateway's owner, never as a `caddy` user: clawgate
// reads the owner's openclaw.json and state dir, which OpenClaw keeps at
// 0600/0700 and whose audit flags a config others can read, so loosening them
// for another user would trip the very checks clawgate enforces.
package service

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Name is the service's name: clawgate.service, and the launchd label's last
// part.
const Name = "clawgate"

// Label is the launchd job label.
const Label = "ai.clawgate.caddy"

// Params is what a service file says.
type Params struct {
	// Binary is the caddy binary, an absolute path.
	Binary string
	// Config is the Caddy config file, an absolute path.
	Config string
	// Adapter is the config's adapter; empty lets Caddy choose as `caddy run`
	// does.
	Adapter string
	// User reports whether the file is for the owner's own service manager
	// (systemd --user, a launchd agent) rather than the system's.
	User bool
	// Owner, Group and UID are the account the service runs as: the gateway's
	// owner.
	Owner, Group, UID string
	// Home is the owner's home directory.
	Home string
	// Env is the environment the service gets beyond its manager's own, as
	// NAME=value, in order.
	Env []string
	// WritePaths are the directories the service writes (Caddy's data and
	// config dirs, node state, device approvals, the admin socket's dir);
	// everything else is read-only to it.
	WritePaths []string
}

// Validate reports what is missing or unusable in p.
func (p Params) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"binary", p.Binary}, {"config", p.Config}, {"home", p.Home}} {
		if !filepath.IsAbs(f.v) {
			errs = append(errs, fmt.Errorf("the %s must be an absolute path, not %q", f.name, f.v))
		}
	}
	if !p.User && (p.Owner == "" || p.UID == "") {
		errs = append(errs, errors.New("a system service needs the user it runs as"))
	}
	for _, w := range p.WritePaths {
		if !filepath.IsAbs(w) {
			errs = append(errs, fmt.Errorf("a path the service writes must be absolute, not %q", w))
		}
	}
	for _, e := range p.Env {
		if name, _, ok := strings.Cut(e, "="); !ok || name == "" {
			errs = append(errs, fmt.Errorf("environment entry %q is not NAME=value", e))
		}
	}
	for _, s := range append([]string{p.Binary, p.Config, p.Adapter, p.Owner, p.Group, p.Home}, append(p.WritePaths, p.Env...)...) {
		if strings.ContainsAny(s, "\n\r\x00") {
			errs = append(errs, fmt.Errorf("%q holds a line break or NUL", s))
		}
	}
	return errors.Join(errs...)
}

// runArgs is the command line that starts Caddy. --environ is left out on
// purpose: it would print the environment, an auth key included, to the log.
func (p Params) runArgs() []string {
	args := []string{p.Binary, "run", "--config", p.Config}
	if p.Adapter != "" {
		args = append(args, "--adapter", p.Adapter)
	}
	return args
}

// reloadArgs is the graceful reload: the config is read again and posted to
// the admin endpoint named in it (a unix socket), so the tailnet nodes whose
// settings did not change keep running.
func (p Params) reloadArgs() []string {
	args := []string{p.Binary, "reload", "--config", p.Config}
	if p.Adapter != "" {
		args = append(args, "--adapter", p.Adapter)
	}
	return append(args, "--force")
}

// SystemdPath is where a systemd unit is installed: the owner's
// ~/.config/systemd/user (configHome is $XDG_CONFIG_HOME or ~/.config) for a
// user service, /etc/systemd/system for a system one.
func SystemdPath(user bool, configHome string) string {
	if user {
		return filepath.Join(configHome, "systemd", "user", Name+".service")
	}
	return filepath.Join("/etc/systemd/system", Name+".service")
}

// LaunchdPath is where a launchd property list is installed: the owner's
// ~/Library/LaunchAgents for a user agent, /Library/LaunchDaemons for a
// system daemon.
func LaunchdPath(user bool, home string) string {
	if user {
		return filepath.Join(home, "Library", "LaunchAgents", Label+".plist")
	}
	return filepath.Join("/Library/LaunchDaemons", Label+".plist")
}

// SystemdUnit is the systemd unit for p, hardened as Caddy's own unit is and
// further: no capabilities at all (a tsnet node needs none: it runs
// Tailscale in user space and binds no privileged port), and a file system
// that is read-only but for the state it writes.
func SystemdUnit(p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	kind := "system service, runs as " + p.Owner
	if p.User {
		kind = "user service (systemctl --user)"
	}
	fmt.Fprintf(&b, "# clawgate: the tailnet-only front door for OpenClaw (Caddy), as a %s.\n", kind)
	b.WriteString("# Written by `caddy clawgate service install`; " + stampLine() + "\n")
	b.WriteString("# The line above lets install and uninstall tell whether this file was changed.\n\n")
	b.WriteString("[Unit]\n")
	b.WriteString("Description=clawgate (Caddy): tailnet-only front door for OpenClaw\n")
	b.WriteString("Documentation=https://github.com/clawgate/clawgate\n")
	if p.User {
		b.WriteString("After=network-online.target\n")
	} else {
		// The admin socket lives in the owner's runtime dir, which this
		// unit makes sure exists even when nobody is logged in.
		fmt.Fprintf(&b, "After=network-online.target user-runtime-dir@%s.service\n", p.UID)
		fmt.Fprintf(&b, "Requires=user-runtime-dir@%s.service\n", p.UID)
	}
	b.WriteString("Wants=network-online.target\n\n")
	b.WriteString("[Service]\n")
	b.WriteString("Type=notify\n")
	if !p.User {
		fmt.Fprintf(&b, "User=%s\n", p.Owner)
		if p.Group != "" {
			fmt.Fprintf(&b, "Group=%s\n", p.Group)
		}
	}
	for _, e := range p.Env {
		fmt.Fprintf(&b, "Environment=%s\n", quoteSystemd(e))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", joinSystemd(p.runArgs()))
	fmt.Fprintf(&b, "ExecReload=%s\n", joinSystemd(p.reloadArgs()))
	b.WriteString("TimeoutStopSec=5s\n")
	b.WriteString("LimitNOFILE=1048576\n")
	b.WriteString("Restart=on-failure\n")
	b.WriteString("RestartSec=5s\n")
	b.WriteString("UMask=0077\n")
	b.WriteString("\n# Hardening\n")
	b.WriteString(`NoNewPrivileges=true
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=read-only
`)
	paths := slices.Clone(p.WritePaths)
	slices.Sort(paths)
	paths = slices.Compact(paths)
	for _, w := range paths {
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", quoteSystemd(w))
	}
	b.WriteString(`PrivateTmp=true
PrivateDevices=true
PrivateMounts=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
ProtectProc=invisible
ProcSubset=pid
RestrictNamespaces=true
RestrictRealtime=true
RestrictSUIDSGID=true
LockPersonality=true
MemoryDenyWriteExecute=true
RemoveIPC=true
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
`)
	b.WriteString("\n[Install]\n")
	if p.User {
		b.WriteString("WantedBy=default.target\n")
	} else {
		b.WriteString("WantedBy=multi-user.target\n")
	}
	return stamp(b.String()), nil
}

// LaunchdPlist is the launchd property list for p: a user agent (started at
// login) or a system daemon that runs as the owner (started at boot).
// launchd has no reload of its own: `caddy reload --config <file>` reloads
// gracefully through the admin socket.
func LaunchdPlist(p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
`)
	b.WriteString("<!-- clawgate (Caddy): written by `caddy clawgate service install`; " + stampLine() + " -->\n")
	b.WriteString("<plist version=\"1.0\">\n<dict>\n")
	key := func(k, v string) { fmt.Fprintf(&b, "\t<key>%s</key>\n\t<string>%s</string>\n", k, xmlEscape(v)) }
	key("Label", Label)
	if !p.User {
		key("UserName", p.Owner)
		if p.Group != "" {
			key("GroupName", p.Group)
		}
	}
	b.WriteString("\t<key>ProgramArguments</key>\n\t<array>\n")
	for _, a := range p.runArgs() {
		fmt.Fprintf(&b, "\t\t<string>%s</string>\n", xmlEscape(a))
	}
	b.WriteString("\t</array>\n")
	if len(p.Env) > 0 {
		b.WriteString("\t<key>EnvironmentVariables</key>\n\t<dict>\n")
		for _, e := range p.Env {
			k, v, _ := strings.Cut(e, "=")
			fmt.Fprintf(&b, "\t\t<key>%s</key>\n\t\t<string>%s</string>\n", xmlEscape(k), xmlEscape(v))
		}
		b.WriteString("\t</dict>\n")
	}
	key("WorkingDirectory", p.Home)
	b.WriteString("\t<key>RunAtLoad</key>\n\t<true/>\n")
	b.WriteString("\t<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n")
	b.WriteString("\t<key>ProcessType</key>\n\t<string>Background</string>\n")
	b.WriteString("\t<key>Umask</key>\n\t<integer>63</integer>\n")
	logDir := filepath.Join(p.Home, "Library", "Logs")
	key("StandardOutPath", filepath.Join(logDir, "clawgate.log"))
	key("StandardErrorPath", filepath.Join(logDir, "clawgate.log"))
	b.WriteString("</dict>\n</plist>\n")
	return stamp(b.String()), nil
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

// quoteSystemd quotes one word of a unit file's command line or setting:
// %-specifiers and $-variables are escaped, and a word with blanks, quotes
// or backslashes is double-quoted.
func quoteSystemd(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	if strings.ContainsAny(s, " \t\"'\\$;") || s == "" {
		s = strings.ReplaceAll(s, `\`, `\\`)
		s = strings.ReplaceAll(s, `"`, `\"`)
		s = strings.ReplaceAll(s, "$", "$$")
		return `"` + s + `"`
	}
	return s
}

func joinSystemd(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = quoteSystemd(a)
	}
	return strings.Join(q, " ")
}

// The stamp: a line holding the SHA-256 of the file (with the hash itself
// zeroed), so install and uninstall can tell a file they wrote and nobody
// changed from one they must leave alone.
const stampKey = "clawgate-sha256: "

var (
	zeroHash = strings.Repeat("0", 64)
	stampRE  = regexp.MustCompile(`clawgate-sha256: ([0-9a-f]{64})`)
)

func stampLine() string { return stampKey + zeroHash }

func stamp(content string) string {
	sum := sha256.Sum256([]byte(content))
	return strings.Replace(content, stampKey+zeroHash, stampKey+hex.EncodeToString(sum[:]), 1)
}

// Intact reports whether content was written by install and has not been
// changed since.
func Intact(content []byte) bool {
	m := stampRE.FindSubmatchIndex(content)
	if m == nil {
		return false
	}
	got := string(content[m[2]:m[3]])
	zeroed := string(content[:m[2]]) + zeroHash + string(content[m[3]:])
	sum := sha256.Sum256([]byte(zeroed))
	return got == hex.EncodeToString(sum[:])
}

// ErrChanged is returned for a file that exists and was changed since
// install wrote it, or was not written by install.
var ErrChanged = errors.New("changed since `caddy clawgate service install` wrote it, or not written by it")

// Install writes content to path unless a different file is there that
// install did not write or someone changed since; it reports whether it
// wrote anything (false: the same file was already there).
func Install(path, content string) (bool, error) {
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if string(old) == content {
			return false, nil
		}
		if !Intact(old) {
			return false, fmt.Errorf("%s is %w: not overwriting it; compare it with `caddy clawgate service install --print`, then move it away to install", path, ErrChanged)
		}
	case !errors.Is(err, os.ErrNotExist):
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, nil
}

// Uninstall removes the file at path if install wrote it and nobody changed
// it since; it reports whether there was a file to remove.
func Uninstall(path string) (bool, error) {
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !Intact(old) {
		return false, fmt.Errorf("%s is %w: not removing it", path, ErrChanged)
	}
	return true, os.Remove(path)
}

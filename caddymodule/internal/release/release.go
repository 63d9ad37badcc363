// Package release knows the OpenClaw release lines clawgate supports, what
// differs between them, and which one a gateway is assumed to run.
//
// clawgate never runs OpenClaw to ask. The version comes from the gateway
// block's openclaw_version, else from the package.json of the installed
// openclaw package when its path is configured, else from the config's
// meta.lastTouchedVersion (the version that last wrote openclaw.json: a hint,
// since the gateway may have been upgraded since). With none of them, or a
// version no line matches, clawgate assumes the newest known line for what it
// writes and checks, keeps every check on, and sends the scope cap that was
// measured to grant nothing on every known line.
package release

import (
	"encoding/json"

	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Version is an OpenClaw version, YYYY.M.N.
type Version struct {
	Year, Month, Patch int
}

// Parse reads an OpenClaw version such as "2026.9.6". A leading "v" and a
// pre-release or build suffix ("-beta.1", "+abc") are accepted and dropped.
func Parse(s string) (Version, error) {
	in := strings.TrimSpace(s)
	in = strings.TrimPrefix(in, "v")
	if i := strings.IndexAny(in, "-+ "); i >= 0 {
		in = in[:i]
	}
	parts := strings.Split(in, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("%q is not an OpenClaw version (want YYYY.M.N, e.g. %s)", truncate(s, 40), Newest().Version)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || len(p) > 6 || (len(p) > 1 && p[0] == '0') {
			return Version{}, fmt.Errorf("%q is not an OpenClaw version (want YYYY.M.N, e.g. %s)", truncate(s, 40), Newest().Version)
		}
		n[i] = v
	}
	if n[0] < 2000 || n[1] < 1 || n[1] > 12 {
		return Version{}, fmt.Errorf("%q is not an OpenClaw version (want YYYY.M.N, e.g. %s)", truncate(s, 40), Newest().Version)
	}
	return Version{n[0], n[1], n[2]}, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Year, v.Month, v.Patch) }

// Compare returns -1, 0 or +1 as v is older than, the same as or newer than w.
func (v Version) Compare(w Version) int {
	for _, d := range [3]int{v.Year - w.Year, v.Month - w.Month, v.Patch - w.Patch} {
		switch {
		case d < 0:
			return -1
		case d > 0:
			return 1
		}
	}
	return 0
}

// Line is one supported release line and what clawgate relies on in it.
type Line struct {
	Version Version
	// IdentityScopes reports whether gateway.auth.identityScopes exists: the
	// gateway grants a device-less trusted-proxy client the scopes listed for
	// its identity there. Without it such a client gets no scopes at all on
	// WebSocket, and a browser needs `openclaw devices approve` once.
	IdentityScopes bool
	// DeviceAutoApprove reports whether gateway.auth.trustedProxy.deviceAutoApprove exists.
	DeviceAutoApprove bool
	// PublicOrigin reports whether gateway.publicOrigin exists.
	PublicOrigin bool
	// Roles reports whether gateway.roles exists.
	Roles bool
	// PairedDeviceCapped reports whether x-openclaw-scopes caps what a paired
	// device gets on a trusted-proxy WebSocket connection. Where it does not,
	// a device approved with `openclaw devices approve` keeps every scope it
	// asked for at pairing (operator.admin included), whatever the proxy's
	// rule grants.
	PairedDeviceCapped bool
	// NoScopes is the x-openclaw-scopes value this line was measured to read
	// as "no scopes" (POST /tools/invoke answers 403 missing operator.write
	// and a WebSocket connect gets hello-ok with no scopes).
	NoScopes string
}

// NoScopesUnmeasured is the x-openclaw-scopes value sent for a rule that
// grants nothing when the gateway's line is not known: a scope no OpenClaw
// defines. Every known line reads it as granting nothing, and unlike an
// empty value it cannot be mistaken for an absent header (which means the
// full operator set) by a version that trims and drops empty headers.
const NoScopesUnmeasured = "clawgate.none"

// lines are the supported lines, newest first; the first is the pinned one.
// Measured with the real gateway of each (caddymodule's release-line
// end-to-end tests check every field again).
var lines = []Line{
	{Version: Version{2026, 9, 6}, IdentityScopes: true, DeviceAutoApprove: true, PublicOrigin: true, Roles: true, PairedDeviceCapped: true, NoScopes: ""},
	{Version: Version{2026, 8, 2}, IdentityScopes: true, DeviceAutoApprove: true, PublicOrigin: true, Roles: true, PairedDeviceCapped: true, NoScopes: ""},
	{Version: Version{2026, 7, 35}, NoScopes: ""},
}

// Lines returns the supported lines, newest (the pinned one) first.
func Lines() []Line { return append([]Line(nil), lines...) }

// Newest returns the newest supported line.
func Newest() Line { return lines[0] }

// Lookup returns the supported line of exactly version v.
func Lookup(v Version) (Line, bool) {
	for _, l := range lines {
		if l.Version == v {
			return l, true
		}
	}
	return Line{}, false
}

// Source says where a version came from.
type Source string

const (
	// SourceConfigured is the gateway block's openclaw_version.
	SourceConfigured Source = "openclaw_version"
	// SourcePackage is the installed package's package.json.
	SourcePackage Source = "package"
	// SourceConfigHint is the config's meta.lastTouchedVersion.
	SourceConfigHint Source = "meta.lastTouchedVersion"
	// SourceNone means no version was found.
	SourceNone Source = "none"
)

// Evidence is what is known about a gateway's version.
type Evidence struct {
	// Configured is the gateway block's openclaw_version ("" when unset).
	Configured string
	// Package is the version in the installed package's package.json, and
	// PackageErr why it could not be read (both empty when no path is set).
	Package    string
	PackageErr string
	// Hint is the config's meta.lastTouchedVersion ("" when absent).
	Hint string
}

// Assumed is the line whose rules clawgate applies to a gateway, and why.
type Assumed struct {
	// Version is the version found ("" when none).
	Version string `json:"version,omitempty"`
	// Source is where it came from.
	Source Source `json:"source"`
	// Line is the supported line whose rules apply.
	Line string `json:"line"`
	// Known reports whether Version is exactly a supported line.
	Known bool `json:"known"`
	// Why says it in a sentence, including any disagreement between sources.
	Why string `json:"why"`
	// NoScopes is the x-openclaw-scopes value sent for a rule that grants
	// nothing.
	NoScopes string `json:"no_scopes_header"`

	line Line
}

// Features returns the assumed line's features.
func (a Assumed) Features() Line { return a.line }

// Assume decides which line's rules apply. The first source present wins
// (openclaw_version, the package, the config hint); a version that is not a
// supported line gets the rules of the newest line not newer than it (the
// newest line when it is newer than all, the oldest when older than all) and
// the scope cap measured to grant nothing on every line. The same cap is
// used when the sources disagree, since then the version is in doubt.
func Assume(ev Evidence) Assumed {
	type cand struct {
		src Source
		raw string
	}
	var found []cand
	for _, c := range []cand{{SourceConfigured, ev.Configured}, {SourcePackage, ev.Package}, {SourceConfigHint, ev.Hint}} {
		if strings.TrimSpace(c.raw) != "" {
			found = append(found, c)
		}
	}
	var notes []string
	if ev.PackageErr != "" {
		notes = append(notes, "the installed package's version could not be read: "+ev.PackageErr)
	}
	if len(found) == 0 {
		a := Assumed{Source: SourceNone, line: Newest(), Line: Newest().Version.String(), NoScopes: NoScopesUnmeasured}
		a.Why = fmt.Sprintf("no OpenClaw version is known (set openclaw_version on the gateway block); the rules of the newest known line, %s, apply, every check stays on, and a rule that grants no scopes sends x-openclaw-scopes: %s", a.Line, NoScopesUnmeasured)
		a.Why = joinNotes(a.Why, notes)
		return a
	}
	first := found[0]
	a := Assumed{Version: strings.TrimSpace(first.raw), Source: first.src}
	v, err := Parse(first.raw)
	if err != nil {
		a.line = Newest()
		a.Line = a.line.Version.String()
		a.NoScopes = NoScopesUnmeasured
		a.Why = fmt.Sprintf("%s says %s; the rules of the newest known line, %s, apply and a rule that grants no scopes sends x-openclaw-scopes: %s", first.src, err, a.Line, NoScopesUnmeasured)
		return a
	}
	a.Version = v.String()
	if l, ok := Lookup(v); ok {
		a.line, a.Known, a.NoScopes = l, true, l.NoScopes
		a.Why = fmt.Sprintf("OpenClaw %s, from %s", v, first.src)
	} else {
		a.line = nearest(v)
		a.NoScopes = NoScopesUnmeasured
		a.Why = fmt.Sprintf("OpenClaw %s, from %s, is not a supported line (%s); the rules of %s apply, every check stays on, and a rule that grants no scopes sends x-openclaw-scopes: %s", v, first.src, supported(), a.line.Version, NoScopesUnmeasured)
	}
	a.Line = a.line.Version.String()
	for _, c := range found[1:] {
		w, err := Parse(c.raw)
		if err == nil && w == v {
			continue
		}
		if c.src == SourceConfigHint {
			// The config was last written by another version: normal after an
			// upgrade, worth saying, no reason to doubt a better source.
			notes = append(notes, fmt.Sprintf("the config was last written by OpenClaw %s", strings.TrimSpace(c.raw)))
			continue
		}
		notes = append(notes, fmt.Sprintf("%s says %s", c.src, strings.TrimSpace(c.raw)))
		a.NoScopes = NoScopesUnmeasured
	}
	a.Why = joinNotes(a.Why, notes)
	return a
}

// nearest returns the newest line not newer than v, or the oldest line.
func nearest(v Version) Line {
	for _, l := range lines {
		if l.Version.Compare(v) <= 0 {
			return l
		}
	}
	return lines[len(lines)-1]
}

func supported() string {
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = l.Version.String()
	}
	return "supported: " + strings.Join(s, ", ")
}

func joinNotes(s string, notes []string) string {
	if len(notes) == 0 {
		return s
	}
	return s + "; " + strings.Join(notes, "; ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// PackageFile is the package.json of the installed package at dir, which may
// name the file itself.
func PackageFile(dir string) string {
	if filepath.Base(dir) == "package.json" {
		return dir
	}
	return filepath.Join(dir, "package.json")
}

// PackageVersion reads the version of the openclaw package installed at dir
// (the directory holding its package.json, such as
// /usr/lib/node_modules/openclaw); dir may also name the package.json.
func PackageVersion(dir string) (string, error) {
	path := PackageFile(dir)
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading the openclaw package: %w", err)
	}
	defer f.Close()
	// package.json of openclaw is a few KB; a cap keeps a wrong path cheap.
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return "", fmt.Errorf("reading the openclaw package: %w", err)
	}
	if len(b) > 1<<20 {
		return "", fmt.Errorf("reading the openclaw package: %s is larger than 1 MiB", filepath.Base(path))
	}
	var meta struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return "", fmt.Errorf("reading the openclaw package: %s: %w", filepath.Base(path), err)
	}
	if meta.Name != "openclaw" {
		return "", fmt.Errorf("reading the openclaw package: %s names package %q, not openclaw", filepath.Base(path), truncate(meta.Name, 40))
	}
	if _, err := Parse(meta.Version); err != nil {
		return "", fmt.Errorf("reading the openclaw package: %w", err)
	}
	return meta.Version, nil
}

// ConfigHint returns the meta.lastTouchedVersion of a loaded openclaw.json
// tree: the OpenClaw version that last wrote it, or "".
func ConfigHint(tree map[string]any) string {
	meta, _ := tree["meta"].(map[string]any)
	v, _ := meta["lastTouchedVersion"].(string)
	return v
}

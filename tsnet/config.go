package tsnet

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"tailscale.com/tailcfg"
)

// Config describes one tailnet node that clawgate runs.
//
// A Config holds a secret (AuthKey); every way of printing it (fmt verbs,
// slog, encoding/json) shows only a fingerprint of that secret.
type Config struct {
	// Hostname is the node's name on the tailnet and the first label of its
	// MagicDNS name. Required; a lowercase DNS label (a-z, 0-9, '-', at most
	// 63 characters, no leading or trailing '-').
	Hostname string

	// StateDir holds the node's keys and state. Required. It is created with
	// mode 0700 when missing; an existing directory must be a real directory
	// (not a symlink), owned by the current user and closed to group and
	// others, because whoever reads it can impersonate the node.
	StateDir string

	// AuthKey registers the node without an interactive login. Optional;
	// only used the first time a node registers. Never logged.
	AuthKey string

	// ControlURL is the coordination server, for example a Headscale
	// instance. Empty means Tailscale's.
	ControlURL string

	// Ephemeral registers the node as ephemeral: the control server removes
	// it soon after it goes offline.
	Ephemeral bool

	// Tags are the ACL tags the node asks for, each "tag:<name>". The
	// control server decides whether the node may have them.
	Tags []string

	// Port is the UDP port for WireGuard traffic; 0 picks a free one.
	Port uint16
}

// Validate reports whether c is usable, without touching the file system.
// The error names the offending field.
func (c Config) Validate() error {
	if err := checkHostname(c.Hostname); err != nil {
		return fmt.Errorf("hostname %q: %w", c.Hostname, err)
	}
	if c.StateDir == "" {
		return errors.New("state_dir: required")
	}
	if c.ControlURL != "" {
		if err := checkControlURL(c.ControlURL); err != nil {
			return fmt.Errorf("control_url %q: %w", c.ControlURL, err)
		}
	}
	for i, tag := range c.Tags {
		if err := tailcfg.CheckTag(tag); err != nil {
			return fmt.Errorf("tags[%d] %q: %w", i, tag, err)
		}
		if slices.Contains(c.Tags[:i], tag) {
			return fmt.Errorf("tags[%d] %q: duplicate", i, tag)
		}
	}
	if strings.ContainsAny(c.AuthKey, " \t\r\n") {
		// Said without quoting the key: it is a secret even when malformed.
		return errors.New("auth_key: contains whitespace")
	}
	return nil
}

// checkHostname reports why name is not a lowercase DNS label, or nil.
func checkHostname(name string) error {
	switch {
	case name == "":
		return errors.New("required")
	case len(name) > 63:
		return errors.New("longer than 63 characters")
	case name[0] == '-' || name[len(name)-1] == '-':
		return errors.New("must not start or end with '-'")
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
		case r >= 'A' && r <= 'Z':
			return errors.New("must be lowercase (the tailnet lowercases it anyway)")
		default:
			return fmt.Errorf("invalid character %q: use a-z, 0-9 and '-'", r)
		}
	}
	return nil
}

// checkControlURL reports why u cannot be a control server URL, or nil.
func checkControlURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if p.Host == "" {
		return errors.New("missing host")
	}
	if p.User != nil {
		return errors.New("must not contain credentials")
	}
	return nil
}

// prepareStateDir creates dir with mode 0700 when it is missing, and refuses
// one that another user could read, write or swap out from under us.
func prepareStateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating: %w", err)
		}
		// MkdirAll honours the umask, which can only remove bits; Chmod
		// makes the mode exact on systems with an unusual umask.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("setting mode 0700: %w", err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return errors.New("is a symlink; point state_dir at the real directory")
	}
	if !fi.IsDir() {
		return errors.New("is not a directory")
	}
	if runtime.GOOS == "windows" {
		// Unix permission bits say nothing about Windows ACLs.
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("mode %#o lets group or others in; run chmod 700 %s", perm, dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, not by the current user (uid %d)", st.Uid, os.Geteuid())
	}
	return nil
}

// Equal reports whether c and o describe the same node, so that a config
// reload can keep a running node instead of replacing it. Tags compare as a
// set; the auth key compares in constant time.
func (c Config) Equal(o Config) bool {
	return c.Hostname == o.Hostname &&
		filepath.Clean(c.StateDir) == filepath.Clean(o.StateDir) &&
		subtle.ConstantTimeCompare([]byte(c.AuthKey), []byte(o.AuthKey)) == 1 &&
		c.ControlURL == o.ControlURL &&
		c.Ephemeral == o.Ephemeral &&
		sameSet(c.Tags, o.Tags) &&
		c.Port == o.Port
}

// sameSet reports whether a and b hold the same strings, ignoring order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// fingerprint returns a short, non-reversible name for a secret, so logs and
// errors can tell two secrets apart without showing either.
func fingerprint(secret string) string {
	if secret == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// redactedConfig mirrors Config with the auth key replaced by its
// fingerprint. It has no methods, so printing it cannot recurse.
type redactedConfig struct {
	Hostname   string
	StateDir   string
	AuthKey    string
	ControlURL string
	Ephemeral  bool
	Tags       []string
	Port       uint16
}

func (c Config) redacted() redactedConfig {
	return redactedConfig{
		Hostname:   c.Hostname,
		StateDir:   c.StateDir,
		AuthKey:    fingerprint(c.AuthKey),
		ControlURL: c.ControlURL,
		Ephemeral:  c.Ephemeral,
		Tags:       c.Tags,
		Port:       c.Port,
	}
}

// String returns c with the auth key shown only as a fingerprint.
func (c Config) String() string {
	return fmt.Sprintf("%+v", c.redacted())
}

// GoString returns c as Go syntax with the auth key shown only as a
// fingerprint.
func (c Config) GoString() string {
	return strings.Replace(fmt.Sprintf("%#v", c.redacted()), "tsnet.redactedConfig", "tsnet.Config", 1)
}

// Format makes every fmt verb go through String or GoString; without it,
// verbs such as %d or %x would print the struct field by field, auth key
// included.
func (c Config) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, c.GoString())
		return
	}
	fmt.Fprint(f, c.String())
}

// LogValue keeps the auth key out of log/slog output, JSON handler included.
func (c Config) LogValue() slog.Value {
	return slog.StringValue(c.String())
}

// MarshalJSON encodes c with the auth key replaced by its fingerprint, so a
// Config that ends up in a JSON log or debug dump does not leak the key.
// Config is not a storage format: do not expect the key to round-trip.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(c.redacted())
}

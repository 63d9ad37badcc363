package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"
)

// Every secret clawgate reads (tailnet auth keys, edge tokens, the gateway's
// token, JWT HMAC keys, webhook secrets) is written as one placeholder, as
// Caddy users write secrets:
//
//	{env.VAR}          an environment variable
//	{file./path}       a file no other user can read
//
// clawgate reads them itself rather than through Caddy's replacer, which
// turns an unset variable or an unreadable file into an empty string and
// never looks at a file's permissions. The value is trimmed of surrounding
// whitespace, must not be empty, and is never logged; the configuration only
// ever holds the placeholder, so Caddy's /config shows no secret.

// readSecret resolves a secret placeholder. Its errors name the placeholder
// (never the value); the caller puts the setting's name in front.
func readSecret(placeholder string) ([]byte, error) {
	p := strings.TrimSpace(placeholder)
	if p == "" {
		return nil, errors.New("required: a placeholder such as {env.VAR} or {file./path}")
	}
	inner, ok := strings.CutPrefix(p, "{")
	if ok {
		inner, ok = strings.CutSuffix(inner, "}")
	}
	if !ok || strings.ContainsAny(inner, "{}") {
		return nil, errors.New("must be a placeholder, {env.VAR} or {file./path}, not a literal secret: the config, and so the secret, would be visible in Caddy's /config admin API")
	}
	switch {
	case strings.HasPrefix(inner, "env."):
		name := strings.TrimPrefix(inner, "env.")
		if name == "" {
			return nil, fmt.Errorf("%s names no environment variable", p)
		}
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			return nil, fmt.Errorf("%s is empty or unset", p)
		}
		return []byte(v), nil
	case strings.HasPrefix(inner, "file."):
		path := strings.TrimPrefix(inner, "file.")
		if path == "" {
			return nil, fmt.Errorf("%s names no file", p)
		}
		b, err := readSecretFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s is not a secret placeholder; use {env.VAR} or {file./path}", p)
}

// readSecretFile reads a secret from a file that other users cannot read.
func readSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("secret file %s is readable by every user (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret file: %w", err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	return []byte(v), nil
}

// readLegacySecret reads a secret given in one of the older forms: an
// environment variable's name or a file's path. It goes through readSecret,
// so both keep the same guarantees.
func readLegacySecret(env, file string) ([]byte, error) {
	switch {
	case env != "" && file != "":
		return nil, errors.New("env and file are mutually exclusive")
	case env != "":
		return readSecret("{env." + env + "}")
	case file != "":
		return readSecret("{file." + file + "}")
	}
	return nil, errors.New("required: a placeholder such as {env.VAR} or {file./path}")
}

// legacyPlaceholder is the placeholder that replaces an older env or file
// setting.
func legacyPlaceholder(env, file string) string {
	if env != "" {
		return "{env." + env + "}"
	}
	return "{file." + file + "}"
}

// warnDeprecated logs, once per load, that a setting uses an older secret
// form, with the spelling that replaces it. It never logs a secret: only
// variable names and paths.
func warnDeprecated(logger *zap.Logger, setting, caddyfile, jsonForm string) {
	if logger == nil {
		return
	}
	logger.Warn("deprecated secret setting: it still works, but write the secret as a placeholder",
		zap.String("setting", setting), zap.String("caddyfile", caddyfile), zap.String("json", jsonForm))
}

// SecretSource is the gateway's own token for brokering: a placeholder,
// {env.VAR} or {file./path}, written in JSON as a string. The older object
// form, {"env": "VAR"} or {"file": "/path"}, still loads, with a deprecation
// warning.
type SecretSource struct {
	// Placeholder is {env.VAR} or {file./path}.
	Placeholder string `json:"-"`
	// Env is an environment variable holding the secret. Deprecated: use
	// Placeholder {env.VAR}.
	Env string `json:"env,omitempty"`
	// File is a file holding the secret, not readable by other users.
	// Deprecated: use Placeholder {file./path}.
	File string `json:"file,omitempty"`
}

// UnmarshalJSON accepts a placeholder string or the older object form.
func (s *SecretSource) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = SecretSource{Placeholder: str}
		return nil
	}
	type object SecretSource
	var o object
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return fmt.Errorf("want a placeholder string such as \"{env.VAR}\": %w", err)
	}
	*s = SecretSource(o)
	return nil
}

// MarshalJSON writes the placeholder form when it is set.
func (s SecretSource) MarshalJSON() ([]byte, error) {
	if s.Placeholder != "" {
		return json.Marshal(s.Placeholder)
	}
	type object SecretSource
	return json.Marshal(object(s))
}

// legacy reports whether the secret uses the older env/file form.
func (s *SecretSource) legacy() bool { return s.Placeholder == "" && (s.Env != "" || s.File != "") }

func (s *SecretSource) read() ([]byte, error) {
	if s.Placeholder != "" {
		if s.Env != "" || s.File != "" {
			return nil, errors.New("a placeholder and env or file are mutually exclusive")
		}
		return readSecret(s.Placeholder)
	}
	return readLegacySecret(s.Env, s.File)
}

package audit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/json5"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// UnknownKeysCheckID is the finding for config keys the schema used for a
// gateway of an unsupported OpenClaw version does not know.
const UnknownKeysCheckID = "clawgate.unknown_config_keys"

// maxUnknownRounds bounds how often ValidateLenient removes unknown keys and
// validates again (OpenClaw checks channels only once the rest passes, so
// keys can surface in a second round).
const maxUnknownRounds = 8

// UnsupportedVersion reports whether a is a version that was found but is
// not a supported line (newer, older or unparsable): its config may hold
// keys no recorded schema knows. With no version found at all, the pinned
// line is assumed and its schema holds.
func UnsupportedVersion(a release.Assumed) bool {
	return !a.Known && a.Source != release.SourceNone && a.Source != ""
}

// ValidateLenient checks a config whose OpenClaw version is not a supported
// line against the newest line's schema, as ValidateFor does, except that a
// key the schema does not know is not an issue: it is returned in unknown
// (dotted paths), and the rest of the config is validated without it. The
// issues returned are the ones left, which still make the config invalid.
// An unknown key whose path cannot be told apart (a key holding a dot)
// stays an issue.
func ValidateLenient(cfg *Config) (unknown []string, issues []Issue, err error) {
	s, err := LoadSchema(release.Newest().Version.String())
	if err != nil {
		return nil, nil, err
	}
	tree, _ := json5.Clone(cfg.Tree, nil).(map[string]any)
	for range maxUnknownRounds {
		issues = s.Validate(tree)
		removed := false
		for _, is := range issues {
			for _, key := range unknownKeysOf(is) {
				path := is.Path
				if path == "<root>" {
					path = ""
				}
				if p, ok := removeKey(tree, path, key); ok {
					unknown = append(unknown, p)
					removed = true
				}
			}
		}
		if !removed {
			return unknown, issues, nil
		}
	}
	return unknown, s.Validate(tree), nil
}

// unknownKeysOf returns the keys an issue says the schema does not know.
func unknownKeysOf(is Issue) []string {
	msg := is.Message
	switch {
	case strings.HasPrefix(msg, "Unrecognized key: "), strings.HasPrefix(msg, "Unrecognized keys: "):
		_, list, _ := strings.Cut(msg, ": ")
		var keys []string
		for _, q := range strings.Split(list, ", ") {
			k, err := strconv.Unquote(q)
			if err != nil {
				return nil
			}
			keys = append(keys, k)
		}
		return keys
	case strings.HasPrefix(msg, "invalid config: must not have additional properties: "):
		k, err := strconv.Unquote(strings.TrimPrefix(msg, "invalid config: must not have additional properties: "))
		if err != nil {
			return nil
		}
		return []string{k}
	case strings.HasPrefix(msg, "unknown channel id: "):
		// The issue's path is the channel itself.
		parent, key, ok := strings.Cut(is.Path, ".")
		if !ok || parent != "channels" {
			return nil
		}
		return []string{"\x00" + key}
	}
	return nil
}

// removeKey deletes key from the object at the dotted path of tree and
// returns the dotted path of what it deleted, or false. A key starting with
// NUL names the last element of path itself (an unknown channel is reported
// at channels.<id>).
func removeKey(tree map[string]any, path, key string) (string, bool) {
	if rest, ok := strings.CutPrefix(key, "\x00"); ok {
		i := strings.LastIndex(path, ".")
		if i < 0 || path[i+1:] != rest {
			return "", false
		}
		path, key = path[:i], rest
	}
	var cur any = tree
	if path != "" {
		for _, part := range strings.Split(path, ".") {
			switch x := cur.(type) {
			case map[string]any:
				cur = x[part]
			case []any:
				n, err := strconv.Atoi(part)
				if err != nil || n < 0 || n >= len(x) {
					return "", false
				}
				cur = x[n]
			default:
				return "", false
			}
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		return "", false
	}
	if _, ok := m[key]; !ok {
		return "", false
	}
	delete(m, key)
	return strings.TrimPrefix(path+"."+key, "."), true
}

// UnknownKeysFinding is the warning for keys ValidateLenient set aside.
func UnknownKeysFinding(a release.Assumed, unknown []string) Finding {
	newest := release.Newest().Version.String()
	return Finding{
		CheckID:  UnknownKeysCheckID,
		Severity: SeverityWarn,
		Title:    "Config keys the newest known OpenClaw schema does not know",
		Detail: fmt.Sprintf("OpenClaw %s (from %s) is not a supported release line, so clawgate validated the config with the schema of %s, the newest line it knows, and it does not know: %s. The gateway is served and every security check runs; these keys are not judged by them.",
			a.Version, a.Source, newest, strings.Join(unknown, ", ")),
		Remediation: "If your OpenClaw version does not know these keys either, remove them (it refuses to load such a config); otherwise check what they do, since clawgate's audit cannot. Setting openclaw_version to a supported line makes them errors again.",
	}
}

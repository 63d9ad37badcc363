package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/clawgate/clawgate/caddymodule/internal/json5"
)

// Include limits, as OpenClaw enforces them (src/config/includes.ts).
const (
	maxIncludeDepth     = 10
	maxIncludeFileBytes = 2 << 20
	maxIncludePathLen   = 4096
)

// LoadOptions says where the config lives and which environment to read.
// Tests set Env and Home so nothing leaks in from the process.
type LoadOptions struct {
	// ConfigPath is the config file. Empty means OPENCLAW_CONFIG_PATH, then
	// <StateDir>/openclaw.json.
	ConfigPath string
	// StateDir is OpenClaw's state directory. Empty means OPENCLAW_STATE_DIR,
	// then ~/.openclaw.
	StateDir string
	// Env looks up environment variables. Nil means the process environment.
	Env func(key string) (string, bool)
	// Home is the user's home directory for "~" expansion. Empty means
	// OPENCLAW_HOME, then HOME from Env, then the OS's idea of it.
	Home string
	// Overlay replaces the contents of files (keyed by clean path) as read,
	// so a config can be judged as it would be after an edit not yet
	// written. The files themselves must still exist and pass every check.
	Overlay map[string][]byte
}

// EnvMap adapts a map to LoadOptions.Env.
func EnvMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// Config is a loaded OpenClaw configuration: the merged, env-substituted tree
// plus what the checks and the caller's file watcher need to know about where
// it came from.
type Config struct {
	// Path is the absolute path of the main config file (not resolved through
	// symlinks, so a symlinked config stays visible as such).
	Path string
	// StateDir is the absolute state directory.
	StateDir string
	// Tree is the config after $include merging and ${VAR} substitution.
	Tree map[string]any
	// Includes lists every file pulled in through $include, in load order,
	// without duplicates.
	Includes []string
	// Warnings are non-fatal load problems, such as a missing env var.
	Warnings []string
	// Unresolved holds the dotted config paths whose ${VAR} reference stayed
	// unresolved (OpenClaw treats those values as absent).
	Unresolved map[string]bool

	env  func(string) (string, bool)
	home string
}

// Getenv returns the value of an environment variable as the config loader
// saw it, config env.vars included.
func (c *Config) Getenv(key string) string {
	if c.env == nil {
		return ""
	}
	v, _ := c.env(key)
	return v
}

// Home returns the home directory used for "~" expansion.
func (c *Config) Home() string { return c.home }

// Load reads, merges and substitutes an OpenClaw config the way OpenClaw
// does: JSON5, $include (single or array, deep-merged in order, siblings
// override, at most 10 levels and 2 MB per file, confined to the config
// directory unless OPENCLAW_INCLUDE_ROOTS allows more, cycles refused), config
// env.vars, then ${VAR} substitution ($${VAR} escapes; missing or empty
// variables are left as written and reported in Warnings).
func Load(opts LoadOptions) (*Config, error) {
	env := opts.Env
	if env == nil {
		env = os.LookupEnv
	}
	home := resolveHome(opts.Home, env)
	stateDir, configPath, err := resolvePaths(opts, env, home)
	if err != nil {
		return nil, err
	}
	data, err := readLimited(configPath, json5.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if o, ok := opts.Overlay[filepath.Clean(configPath)]; ok {
		data = o
	}
	root, err := json5.Parse(filepath.Base(configPath), data)
	if err != nil {
		return nil, fmt.Errorf("parsing config: %w", err)
	}
	inc := &includer{
		boundary: newIncludeBoundary(configPath, includeRoots(env, home)),
		visited:  map[string]bool{filepath.Clean(configPath): true},
		basePath: configPath,
		seen:     map[string]bool{},
		overlay:  opts.Overlay,
	}
	merged, err := inc.process(root)
	if err != nil {
		return nil, fmt.Errorf("resolving $include: %w", err)
	}
	tree, ok := merged.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("config %s: top level must be an object", configPath)
	}
	cfg := &Config{
		Path:       configPath,
		StateDir:   stateDir,
		Includes:   inc.files,
		Unresolved: map[string]bool{},
		home:       home,
	}
	cfg.env = withConfigEnvVars(tree, env)
	cfg.Tree = substituteEnv(tree, "", cfg).(map[string]any)
	return cfg, nil
}

// resolveHome follows OpenClaw's home-dir rules: OPENCLAW_HOME wins over HOME.
// Paths is where Load reads with opts: the absolute state dir and config
// file, resolved from the environment and home as Load resolves them.
func Paths(opts LoadOptions) (stateDir, configPath string, err error) {
	env := opts.Env
	if env == nil {
		env = os.LookupEnv
	}
	return resolvePaths(opts, env, resolveHome(opts.Home, env))
}

func resolveHome(explicit string, env func(string) (string, bool)) string {
	if explicit != "" {
		return explicit
	}
	for _, k := range []string{"OPENCLAW_HOME", "HOME"} {
		if v, ok := env(k); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	h, _ := os.UserHomeDir()
	return h
}

// expandHome resolves a leading "~" against home and makes the path absolute.
func expandHome(p, home string) string {
	if p == "~" {
		p = home
	} else if strings.HasPrefix(p, "~/") {
		p = filepath.Join(home, p[2:])
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func resolvePaths(opts LoadOptions, env func(string) (string, bool), home string) (stateDir, configPath string, err error) {
	stateDir = opts.StateDir
	if stateDir == "" {
		if v, ok := env("OPENCLAW_STATE_DIR"); ok && strings.TrimSpace(v) != "" {
			stateDir = strings.TrimSpace(v)
		} else {
			if home == "" {
				return "", "", errors.New("resolving state dir: no home directory and no OPENCLAW_STATE_DIR")
			}
			stateDir = filepath.Join(home, ".openclaw")
		}
	}
	stateDir = expandHome(stateDir, home)
	configPath = opts.ConfigPath
	if configPath == "" {
		if v, ok := env("OPENCLAW_CONFIG_PATH"); ok && strings.TrimSpace(v) != "" {
			configPath = strings.TrimSpace(v)
		} else {
			configPath = filepath.Join(stateDir, "openclaw.json")
		}
	}
	return stateDir, expandHome(configPath, home), nil
}

// includeRoots parses OPENCLAW_INCLUDE_ROOTS (a PATH-style list).
func includeRoots(env func(string) (string, bool), home string) []string {
	raw, _ := env("OPENCLAW_INCLUDE_ROOTS")
	var roots []string
	seen := map[string]bool{}
	for _, e := range filepath.SplitList(strings.TrimSpace(raw)) {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		r := expandHome(e, home)
		if !filepath.IsAbs(r) || seen[r] {
			continue
		}
		seen[r] = true
		roots = append(roots, r)
	}
	return roots
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// includeRoot is an allowed include directory, lexically and after symlinks.
type includeRoot struct{ dir, realDir string }

type includeBoundary struct {
	config  includeRoot
	allowed []includeRoot
}

func newIncludeBoundary(configPath string, allowed []string) includeBoundary {
	mk := func(d string) includeRoot {
		d = filepath.Clean(d)
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			real = d
		}
		return includeRoot{dir: d, realDir: filepath.Clean(real)}
	}
	b := includeBoundary{config: mk(filepath.Dir(configPath))}
	for _, a := range allowed {
		b.allowed = append(b.allowed, mk(a))
	}
	return b
}

func (b includeBoundary) contains(p string, real bool) bool {
	for _, r := range append([]includeRoot{b.config}, b.allowed...) {
		root := r.dir
		if real {
			root = r.realDir
		}
		if pathInside(root, p) {
			return true
		}
	}
	return false
}

// pathInside reports whether p is root or below it.
func pathInside(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel))
}

// includer resolves $include directives. One is made per file being
// processed, as OpenClaw's IncludeProcessor is, so relative paths resolve
// against the including file while the boundary stays the main config's.
type includer struct {
	boundary includeBoundary
	basePath string
	visited  map[string]bool
	depth    int
	// shared by every includer of one Load
	files   []string
	seen    map[string]bool
	overlay map[string][]byte
}

func (in *includer) process(v any) (any, error) {
	switch t := v.(type) {
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			r, err := in.process(e)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		incVal, has := t["$include"]
		if !has {
			out := make(map[string]any, len(t))
			for k, e := range t {
				r, err := in.process(e)
				if err != nil {
					return nil, err
				}
				out[k] = r
			}
			return out, nil
		}
		included, err := in.resolve(incVal)
		if err != nil {
			return nil, err
		}
		if len(t) == 1 {
			return included, nil
		}
		incObj, ok := included.(map[string]any)
		if !ok {
			return nil, errors.New("sibling keys next to $include require the included content to be an object")
		}
		rest := make(map[string]any, len(t)-1)
		for k, e := range t {
			if k == "$include" {
				continue
			}
			r, err := in.process(e)
			if err != nil {
				return nil, err
			}
			rest[k] = r
		}
		return deepMerge(incObj, rest), nil
	}
	return v, nil
}

func (in *includer) resolve(v any) (any, error) {
	switch t := v.(type) {
	case string:
		return in.load(t)
	case []any:
		var acc any = map[string]any{}
		for _, item := range t {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("invalid $include array item: expected string, got %s", jsType(item))
			}
			r, err := in.load(s)
			if err != nil {
				return nil, err
			}
			acc = deepMerge(acc, r)
		}
		return acc, nil
	}
	return nil, fmt.Errorf("invalid $include value: expected string or array of strings, got %s", jsType(v))
}

func (in *includer) load(rel string) (any, error) {
	if strings.ContainsRune(rel, 0) {
		return nil, fmt.Errorf("include path %q must not contain null bytes", rel)
	}
	if len(rel) >= maxIncludePathLen {
		return nil, fmt.Errorf("include path exceeds maximum length (%d characters)", maxIncludePathLen)
	}
	p := rel
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(in.basePath), p)
	}
	p = filepath.Clean(p)
	if !in.boundary.contains(p, false) {
		return nil, fmt.Errorf("include path escapes config directory: %s (root: %s)", rel, in.boundary.config.dir)
	}
	real, err := filepath.EvalSymlinks(p)
	if err == nil && !in.boundary.contains(real, true) {
		return nil, fmt.Errorf("include path resolves outside config directory (symlink): %s (root: %s)", rel, in.boundary.config.dir)
	}
	if in.visited[p] {
		chain := make([]string, 0, len(in.visited)+1)
		for k := range in.visited {
			chain = append(chain, k)
		}
		sort.Strings(chain)
		return nil, fmt.Errorf("circular include detected: %s -> %s", strings.Join(chain, ", "), p)
	}
	if in.depth >= maxIncludeDepth {
		return nil, fmt.Errorf("maximum include depth (%d) exceeded at: %s", maxIncludeDepth, rel)
	}
	data, err := readIncludeFile(p)
	if o, ok := in.overlay[filepath.Clean(p)]; ok && err == nil {
		data = o
	}
	if err != nil {
		return nil, fmt.Errorf("reading include file %s: %w", rel, err)
	}
	if !in.seen[p] {
		in.seen[p] = true
		in.files = append(in.files, p)
	}
	parsed, err := json5.Parse(filepath.Base(p), data)
	if err != nil {
		return nil, fmt.Errorf("parsing include file %s: %w", rel, err)
	}
	nested := &includer{
		boundary: in.boundary,
		basePath: p,
		visited:  map[string]bool{p: true},
		depth:    in.depth + 1,
		files:    in.files,
		seen:     in.seen,
		overlay:  in.overlay,
	}
	for k := range in.visited {
		nested.visited[k] = true
	}
	out, err := nested.process(parsed)
	in.files = nested.files
	return out, err
}

// readIncludeFile applies OpenClaw's guards: a regular file, at most 2 MB, and
// not hard-linked (a hard link could smuggle in a file from outside the root).
func readIncludeFile(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return nil, errors.New("include file has more than one hard link")
	}
	if fi.Size() > maxIncludeFileBytes {
		return nil, fmt.Errorf("include file is larger than %d bytes", maxIncludeFileBytes)
	}
	return readLimited(p, maxIncludeFileBytes)
}

// deepMerge merges source into target as OpenClaw's mergeDeep does for
// includes: objects recursively, arrays concatenated, anything else replaced
// by source. Neither argument is modified.
func deepMerge(target, source any) any {
	tm, tok := target.(map[string]any)
	sm, sok := source.(map[string]any)
	if tok && sok {
		out := make(map[string]any, len(tm)+len(sm))
		for k, v := range tm {
			out[k] = v
		}
		for k, v := range sm {
			if old, ok := out[k]; ok {
				out[k] = deepMerge(old, v)
			} else {
				out[k] = v
			}
		}
		return out
	}
	ta, taok := target.([]any)
	sa, saok := source.([]any)
	if taok && saok {
		out := make([]any, 0, len(ta)+len(sa))
		return append(append(out, ta...), sa...)
	}
	return source
}

func jsType(v any) string {
	switch v.(type) {
	case nil:
		return "object"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return "object"
}

var envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// withConfigEnvVars layers the config's env.vars (and plain string entries
// directly under env) under the real environment: they never override a
// variable that is already set to a non-blank value.
func withConfigEnvVars(tree map[string]any, env func(string) (string, bool)) func(string) (string, bool) {
	envCfg, _ := tree["env"].(map[string]any)
	if envCfg == nil {
		return env
	}
	extra := map[string]string{}
	add := func(k string, v any) {
		s, ok := v.(string)
		if !ok || strings.TrimSpace(s) == "" || !envKeyRe.MatchString(k) {
			return
		}
		extra[k] = s
	}
	if vars, ok := envCfg["vars"].(map[string]any); ok {
		for k, v := range vars {
			add(k, v)
		}
	}
	for k, v := range envCfg {
		if k != "vars" && k != "shellEnv" {
			add(k, v)
		}
	}
	return func(k string) (string, bool) {
		if v, ok := env(k); ok && strings.TrimSpace(v) != "" {
			return v, true
		}
		if v, ok := extra[k]; ok {
			return v, true
		}
		return env(k)
	}
}

var envNameRe = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// substituteEnv replaces ${VAR} in every string value (not in keys).
func substituteEnv(v any, path string, cfg *Config) any {
	switch t := v.(type) {
	case string:
		return substituteString(t, path, cfg)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = substituteEnv(e, path+"["+strconv.Itoa(i)+"]", cfg)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			p := k
			if path != "" {
				p = path + "." + k
			}
			out[k] = substituteEnv(e, p, cfg)
		}
		return out
	}
	return v
}

// envTokenAt recognises "${NAME}" (escaped=false) or "$${NAME}" (escaped)
// at s[i], returning the name and the index of the closing brace.
func envTokenAt(s string, i int) (name string, end int, escaped, ok bool) {
	if s[i] != '$' {
		return "", 0, false, false
	}
	if strings.HasPrefix(s[i:], "$${") {
		if j := strings.IndexByte(s[i+3:], '}'); j >= 0 {
			if n := s[i+3 : i+3+j]; envNameRe.MatchString(n) {
				return n, i + 3 + j, true, true
			}
		}
	}
	if strings.HasPrefix(s[i:], "${") {
		if j := strings.IndexByte(s[i+2:], '}'); j >= 0 {
			if n := s[i+2 : i+2+j]; envNameRe.MatchString(n) {
				return n, i + 2 + j, false, true
			}
		}
	}
	return "", 0, false, false
}

func substituteString(s, path string, cfg *Config) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		name, end, escaped, ok := envTokenAt(s, i)
		if !ok {
			b.WriteByte(s[i])
			continue
		}
		if escaped {
			b.WriteString("${" + name + "}")
			i = end
			continue
		}
		val, _ := cfg.env(name)
		if val == "" {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("missing env var %q at %s", name, path))
			cfg.Unresolved[path] = true
			b.WriteString("${" + name + "}")
		} else {
			b.WriteString(val)
		}
		i = end
	}
	return b.String()
}

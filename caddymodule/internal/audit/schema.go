package audit

import (
	"bytes"
	"compress/gzip"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/clawgate/clawgate/caddymodule/internal/json5"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// The JSON Schemas OpenClaw publishes for openclaw.json (`openclaw config
// schema`), one per release line, recorded by scripts/openclaw-schema.sh.
//
//go:embed schema/openclaw-*.schema.json.gz
var schemaFiles embed.FS

// DefaultSchemaVersion is the OpenClaw release whose schema Validate uses:
// the version the project pins and tests against.
const DefaultSchemaVersion = "2026.9.6"

// Issue is one reason OpenClaw refuses a config, shaped as in
// `openclaw config validate --json`: a dotted path ("<root>" for the top
// level, array indexes as numbers) and a message in OpenClaw's words, for
// the config's owner: a message may quote part of the config (a key, a
// bind), so only paths are shown to callers of the gate.
type Issue struct {
	Path          string `json:"path"`
	Message       string `json:"message"`
	AllowedValues []any  `json:"allowedValues,omitempty"`
}

// Schema is one OpenClaw version's compiled config schema.
type Schema struct {
	Version string
	root    *jsonschema.Schema
}

var compiled sync.Map // version -> func() (*Schema, error)

// SchemaVersions lists the OpenClaw versions whose schema is recorded.
func SchemaVersions() []string {
	names, _ := schemaFiles.ReadDir("schema")
	var out []string
	for _, e := range names {
		v, ok := strings.CutPrefix(e.Name(), "openclaw-")
		if v, ok2 := strings.CutSuffix(v, ".schema.json.gz"); ok && ok2 {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// LoadSchema returns the compiled schema of an OpenClaw version. Each
// version is decompressed and compiled once per process, on first use; later
// calls (every audit of every gateway) share it.
func LoadSchema(version string) (*Schema, error) {
	f, _ := compiled.LoadOrStore(version, sync.OnceValues(func() (*Schema, error) { return compileSchema(version) }))
	return f.(func() (*Schema, error))()
}

func compileSchema(version string) (*Schema, error) {
	name := "schema/openclaw-" + version + ".schema.json.gz"
	gz, err := schemaFiles.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("no recorded config schema for OpenClaw %q (recorded: %s)", version, strings.Join(SchemaVersions(), ", "))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", name, err)
	}
	doc, err := jsonschema.UnmarshalJSON(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", name, err)
	}
	rebaseLocalRefs(doc, "", true)
	optionalDefaults(doc)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	// Zod's string().url() is printed as format "uri" and refuses what
	// `new URL()` cannot parse; the validator's absolute-URI check is the
	// closest it has.
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: "uri", Validate: func(v any) error {
		if s, ok := v.(string); ok && !parsesAsURL(s) {
			return errors.New("invalid URL")
		}
		return nil
	}})
	// The schema repeats a few dozen patterns about a thousand times.
	regexps := map[string]jsonschema.Regexp{}
	c.UseRegexpEngine(func(src string) (jsonschema.Regexp, error) {
		if re, ok := regexps[src]; ok {
			return re, nil
		}
		re, err := compileSchemaRegexp(src)
		if err == nil {
			regexps[src] = re
		}
		return re, err
	})
	loc := "https://schema.clawgate.invalid/openclaw-" + version + ".schema.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("loading %s: %w", name, err)
	}
	root, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("compiling %s: %w", name, err)
	}
	return &Schema{Version: version, root: root}, nil
}

// parsesAsURL reports whether JavaScript's new URL() would accept s, as far
// as Go's parser can tell: a scheme, and for the schemes WHATWG treats as
// special a host and a port that fits in 16 bits.
func parsesAsURL(s string) bool {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Scheme == "" {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https", "ws", "wss", "ftp":
		if u.Host == "" || u.Hostname() == "" {
			return false
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n > 65535 {
				return false
			}
		}
	}
	return true
}

// rebaseLocalRefs points the "$ref"s of an embedded schema at its own
// "$defs". OpenClaw inlines each plugin's config schema whole, "$defs" and
// "#/$defs/…" references included; those references mean the plugin
// schema's root, which is now the subtree holding the "$defs", not the
// document's root.
func rebaseLocalRefs(v any, ptr string, atRoot bool) {
	rebase(v, ptr, "", atRoot)
}

func rebase(v any, ptr, base string, atRoot bool) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["$defs"]; ok && !atRoot {
			base = ptr
		}
		if ref, ok := x["$ref"].(string); ok && base != "" && strings.HasPrefix(ref, "#/") {
			x["$ref"] = "#" + base + ref[1:]
		}
		for k, e := range x {
			rebase(e, ptr+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"), base, false)
		}
	case []any:
		for i, e := range x {
			rebase(e, ptr+"/"+strconv.Itoa(i), base, false)
		}
	}
}

// optionalDefaults drops from "required" every property that has a
// "default". Zod prints a defaulted field as required because its parsed
// output always has it; on input, which is what a config file is, the field
// may be left out and Zod fills it in.
func optionalDefaults(v any) {
	switch x := v.(type) {
	case map[string]any:
		req, _ := x["required"].([]any)
		props, _ := x["properties"].(map[string]any)
		if len(req) > 0 && props != nil {
			kept := req[:0:0]
			for _, r := range req {
				name, _ := r.(string)
				if p, _ := props[name].(map[string]any); p != nil {
					if _, hasDefault := p["default"]; hasDefault {
						continue
					}
				}
				kept = append(kept, r)
			}
			x["required"] = kept
		}
		for _, e := range x {
			optionalDefaults(e)
		}
	case []any:
		for _, e := range x {
			optionalDefaults(e)
		}
	}
}

// Validate checks a loaded config (after $include and ${VAR}) against the
// default version's schema and OpenClaw's refinements. An empty result means
// OpenClaw would accept the file. An error means the check could not run,
// which a caller must treat as a refusal.
func Validate(cfg *Config) ([]Issue, error) {
	return ValidateVersion(cfg, DefaultSchemaVersion)
}

// ValidateFor checks a loaded config as Validate does, against the schema of
// the release line assumed for its gateway (SchemaVersionFor).
func ValidateFor(cfg *Config, a release.Assumed) ([]Issue, error) {
	return ValidateVersion(cfg, SchemaVersionFor(a))
}

// ValidateVersion checks a loaded config as Validate does, against the
// recorded schema of one OpenClaw version. The refinements OpenClaw checks in
// code (refinements.go) are those of the pinned line, applied on every line.
func ValidateVersion(cfg *Config, version string) ([]Issue, error) {
	s, err := LoadSchema(version)
	if err != nil {
		return nil, err
	}
	return s.Validate(cfg.Tree), nil
}

// SchemaVersionFor returns the version whose recorded schema a gateway's
// config is checked against: the assumed line's when the version is exactly
// a supported line, and the newest line's otherwise (no version, an
// unparsable one, or one that is not a supported line). A version clawgate
// has not measured may know keys no recorded schema has; the newest schema
// is the one a version newer than every line, the usual unknown one, is
// closest to. The security checks run the same whatever the schema.
func SchemaVersionFor(a release.Assumed) string {
	if a.Known && a.Line != "" {
		return a.Line
	}
	return release.Newest().Version.String()
}

// Validate checks a merged config tree, as OpenClaw's loader does: the
// schema first; OpenClaw's code-level refinements only add issues where the
// schema passed for the object they refine (as Zod runs a refinement only on
// a value that parsed).
func (s *Schema) Validate(tree map[string]any) []Issue {
	var issues []Issue
	value := toSchemaValue(tree)
	if err := s.root.Validate(value); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return []Issue{{Path: "<root>", Message: "config could not be validated: " + err.Error()}}
		}
		issues = s.issuesOf(ve, value, issues)
	}
	// OpenClaw validates each channel's own config only once the rest,
	// refinements included, has passed, so a config broken elsewhere
	// reports only the rest.
	var core, channel []Issue
	for _, i := range issues {
		if channelIssue(i.Path) {
			channel = append(channel, i)
		} else {
			core = append(core, i)
		}
	}
	core = append(core, refinementIssues(tree, issues)...)
	if len(core) > 0 {
		return dedupeIssues(core)
	}
	if len(channel) > 0 {
		return dedupeIssues(channel)
	}
	return s.unknownChannels(tree)
}

// unknownChannels is the check OpenClaw's plugin stage makes last: every
// key under channels names a bundled channel (the ones the schema
// describes) or one a plugin provides. Plugins installed into the state
// directory are recorded where clawgate cannot read them, so a channel the
// config itself ties to a plugin (plugins.entries.<id>) or any
// plugins.load.paths entry is given the benefit of the doubt.
func (s *Schema) unknownChannels(tree map[string]any) []Issue {
	channels := obj(tree["channels"])
	plugins := obj(tree["plugins"])
	if len(channels) == 0 || len(stringItems(obj(plugins["load"])["paths"])) > 0 {
		return nil
	}
	var known map[string]*jsonschema.Schema
	if c := s.root.Properties["channels"]; c != nil {
		known = c.Properties
	}
	var out []Issue
	for _, key := range keys(channels) {
		id := strings.TrimSpace(key)
		if id == "" || id == "defaults" || id == "modelByChannel" || known[id] != nil {
			continue
		}
		if _, ok := obj(plugins["entries"])[id]; ok {
			continue
		}
		out = append(out, Issue{Path: "channels." + id, Message: "unknown channel id: " + id})
	}
	return out
}

// channelIssue reports whether a path lies in one channel's config
// (channels.<id>…), which OpenClaw checks against the channel plugin's
// schema after its core schema.
func channelIssue(path string) bool {
	rest, ok := strings.CutPrefix(path, "channels.")
	if !ok {
		return false
	}
	id, _, _ := strings.Cut(rest, ".")
	return id != "defaults" && id != "modelByChannel"
}

// toSchemaValue gives the validator the JSON data model it knows: the JSON5
// parser's non-finite numbers (Infinity, NaN) have no JSON form, so they are
// handed over as strings and fail any numeric type, as OpenClaw's Zod number
// schema refuses them.
func toSchemaValue(v any) any {
	return json5.Clone(v, func(leaf any) any {
		if x, ok := leaf.(float64); ok && (x != x || x > 1.7976931348623157e308 || x < -1.7976931348623157e308) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return leaf
	})
}

// issuesOf turns the validator's error tree into the issues Zod would have
// reported for the same value.
func (s *Schema) issuesOf(ve *jsonschema.ValidationError, value any, out []Issue) []Issue {
	path := ve.InstanceLocation
	switch k := ve.ErrorKind.(type) {
	case *kind.Group, *kind.Schema, *kind.AllOf, *kind.Reference:
		for _, c := range ve.Causes {
			out = s.issuesOf(c, value, out)
		}
		return out
	case *kind.AnyOf, *kind.OneOf:
		if oneOf, ok := k.(*kind.OneOf); ok && len(oneOf.Subschemas) > 1 {
			// Zod's union takes the first option that parses; two that do
			// are no error.
			return out
		}
		// Zod reports a union's failure inside its one option that failed
		// only on checks (lengths, bounds, patterns, formats), and as
		// "Invalid input" at the union otherwise.
		if live := liveOptions(ve); len(live) == 1 {
			return s.issuesOf(live[0], value, out)
		}
		return append(out, Issue{Path: joinPath(path), Message: "Invalid input" + s.allowedOfUnion(ve.SchemaURL)})
	case *kind.AdditionalProperties:
		keys := append([]string(nil), k.Properties...)
		sort.Strings(keys)
		if channelIssue(joinPath(path)) {
			// A channel's own schema is checked by a JSON Schema validator
			// inside OpenClaw, one issue per key, in its words.
			for _, key := range keys {
				out = append(out, Issue{Path: joinPath(path), Message: "invalid config: must not have additional properties: " + strconv.Quote(key)})
			}
			return out
		}
		msg := "Unrecognized key: " + strconv.Quote(keys[0])
		if len(keys) > 1 {
			quoted := make([]string, len(keys))
			for i, key := range keys {
				quoted[i] = strconv.Quote(key)
			}
			msg = "Unrecognized keys: " + strings.Join(quoted, ", ")
		}
		return append(out, Issue{Path: joinPath(path), Message: msg})
	case *kind.Required:
		for _, m := range k.Missing {
			want := "value"
			if obj := s.lookup(ve.SchemaURL); obj != nil {
				if p := obj.Properties[m]; p != nil {
					want = expectedOf(p)
				}
			}
			out = append(out, Issue{Path: joinPath(append(append([]string(nil), path...), m)), Message: "Invalid input: expected " + want + ", received undefined"})
		}
		return out
	case *kind.Type:
		want := zodType(k.Want)
		if len(k.Want) == 1 && k.Want[0] == "integer" && k.Got == "number" {
			want = "int"
		}
		if sch := s.lookup(ve.SchemaURL); want == "object" && sch != nil && len(sch.Properties) == 0 && sch.AdditionalProperties != nil {
			want = "record"
		}
		if channelIssue(joinPath(path)) {
			// A JSON Schema validator reports every failed keyword.
			out = append(out, Issue{Path: joinPath(path), Message: "invalid config: must be " + strings.Join(k.Want, ",")})
			if sch := s.lookup(ve.SchemaURL); sch != nil && sch.Enum != nil {
				out = append(out, Issue{Path: joinPath(path), Message: "invalid config: must be equal to one of the allowed values (allowed: " + joinDisplay(sch.Enum.Values, ", ") + ")"})
			}
			return out
		}
		msg := "Invalid input: expected " + want + ", received " + k.Got
		if want == "boolean" {
			msg += " (allowed: true, false)"
		}
		return append(out, Issue{Path: joinPath(path), Message: msg})
	case *kind.Enum:
		if channelIssue(joinPath(path)) {
			return append(out, Issue{Path: joinPath(path), Message: "invalid config: must be equal to one of the allowed values (allowed: " + joinDisplay(k.Want, ", ") + ")"})
		}
		return append(out, Issue{Path: joinPath(path), Message: "Invalid option: expected one of " + joinDisplay(k.Want, "|"), AllowedValues: k.Want})
	case *kind.Const:
		return append(out, Issue{Path: joinPath(path), Message: "Invalid input: expected " + displayValue(k.Want)})
	case *kind.Pattern:
		return append(out, Issue{Path: joinPath(path), Message: "Invalid string: must match pattern /" + k.Want + "/"})
	case *kind.MinLength:
		return append(out, Issue{Path: joinPath(path), Message: fmt.Sprintf("Too small: expected string to have >=%d characters", k.Want)})
	case *kind.MaxLength:
		return append(out, Issue{Path: joinPath(path), Message: fmt.Sprintf("Too big: expected string to have <=%d characters", k.Want)})
	case *kind.MinItems:
		return append(out, Issue{Path: joinPath(path), Message: fmt.Sprintf("Too small: expected array to have >=%d items", k.Want)})
	case *kind.MaxItems:
		return append(out, Issue{Path: joinPath(path), Message: fmt.Sprintf("Too big: expected array to have <=%d items", k.Want)})
	case *kind.Minimum:
		return append(out, Issue{Path: joinPath(path), Message: "Too small: expected number to be >=" + k.Want.RatString() + " (minimum: " + k.Want.RatString() + ")"})
	case *kind.ExclusiveMinimum:
		return append(out, Issue{Path: joinPath(path), Message: "Too small: expected number to be >" + k.Want.RatString()})
	case *kind.Maximum:
		return append(out, Issue{Path: joinPath(path), Message: "Too big: expected number to be <=" + k.Want.RatString() + " (maximum: " + k.Want.RatString() + ")"})
	case *kind.ExclusiveMaximum:
		return append(out, Issue{Path: joinPath(path), Message: "Too big: expected number to be <" + k.Want.RatString()})
	case *kind.PropertyNames:
		// The validator shares this error's location with its siblings'
		// (it does not copy it), so the object is found again from the
		// schema location instead.
		return append(out, Issue{Path: joinPath(append(propertyNamesPath(ve.SchemaURL, k.Property, value), k.Property)), Message: "Invalid key in record"})
	case *kind.Format:
		if k.Want == "uri" {
			return append(out, Issue{Path: joinPath(path), Message: "Invalid URL"})
		}
		return append(out, Issue{Path: joinPath(path), Message: "Invalid " + k.Want})
	case *kind.FalseSchema:
		// A property the schema forbids outright.
		if len(path) > 0 {
			return append(out, Issue{Path: joinPath(path[:len(path)-1]), Message: "Unrecognized key: " + strconv.Quote(path[len(path)-1])})
		}
	}
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			out = s.issuesOf(c, value, out)
		}
		return out
	}
	return append(out, Issue{Path: joinPath(path), Message: "Invalid input"})
}

// propertyNamesPath finds the object holding a key that failed a
// propertyNames schema (Zod reports the key's own path, object path plus
// key, which the caller appends): it follows the schema location (which ends in
// "/propertyNames") through the config, taking every key or index where the
// schema has additionalProperties or items, and returns the first object, in
// sorted order, that has the key. A location it cannot follow yields the
// longest plain prefix.
func propertyNamesPath(schemaURL, key string, value any) []string {
	_, ptr, _ := strings.Cut(schemaURL, "#")
	ptr = strings.TrimSuffix(ptr, "/propertyNames")
	var toks []string
	if ptr != "" {
		for _, t := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
			toks = append(toks, strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~"))
		}
	}
	var prefix []string
	for i := 0; i+1 < len(toks) && toks[i] == "properties"; i += 2 {
		prefix = append(prefix, toks[i+1])
	}
	var found []string
	var walk func(v any, toks, path []string) bool
	walk = func(v any, toks, path []string) bool {
		if len(toks) == 0 {
			if m, ok := v.(map[string]any); ok {
				if _, ok := m[key]; ok {
					found = path
					return true
				}
			}
			return false
		}
		switch toks[0] {
		case "properties":
			if len(toks) < 2 {
				return false
			}
			m, _ := v.(map[string]any)
			child, ok := m[toks[1]]
			return ok && walk(child, toks[2:], append(slices.Clone(path), toks[1]))
		case "anyOf", "oneOf", "allOf":
			return len(toks) >= 2 && walk(v, toks[2:], path)
		case "additionalProperties", "patternProperties":
			rest := toks[1:]
			if toks[0] == "patternProperties" && len(rest) > 0 {
				rest = rest[1:]
			}
			m, _ := v.(map[string]any)
			for _, k := range keys(m) {
				if walk(m[k], rest, append(slices.Clone(path), k)) {
					return true
				}
			}
		case "items":
			a, _ := v.([]any)
			for i, e := range a {
				if walk(e, toks[1:], append(slices.Clone(path), strconv.Itoa(i))) {
					return true
				}
			}
		}
		return false
	}
	if walk(value, toks, nil) {
		return found
	}
	return prefix
}

// allowedOfUnion spells the values of a union of literals as OpenClaw
// appends them to "Invalid input"; "" for any other union.
func (s *Schema) allowedOfUnion(url string) string {
	sch := s.lookup(url)
	if sch == nil {
		return ""
	}
	options := append(slices.Clone(sch.AnyOf), sch.OneOf...)
	var vals []string
	for _, o := range options {
		switch {
		case o.Const != nil:
			vals = append(vals, displayValue(*o.Const))
		case o.Enum != nil:
			for _, v := range o.Enum.Values {
				vals = append(vals, displayValue(v))
			}
		default:
			return ""
		}
	}
	if len(vals) == 0 {
		return ""
	}
	return " (allowed: " + strings.Join(vals, ", ") + ")"
}

// liveOptions returns the options of a failed union that Zod would not
// have abandoned: those whose every failure is a check rather than a
// mismatch of type, value or shape.
func liveOptions(ve *jsonschema.ValidationError) []*jsonschema.ValidationError {
	var live []*jsonschema.ValidationError
	for _, c := range ve.Causes {
		if !aborts(c) {
			live = append(live, c)
		}
	}
	return live
}

// aborts reports whether an error is one after which Zod stops parsing the
// value: a wrong type, a missing field, a wrong literal or enum value, an
// unknown key, or a union none of whose options survives.
func aborts(ve *jsonschema.ValidationError) bool {
	switch k := ve.ErrorKind.(type) {
	case *kind.Type, *kind.Required, *kind.Enum, *kind.Const, *kind.AdditionalProperties, *kind.FalseSchema:
		return true
	case *kind.OneOf:
		if len(k.Subschemas) > 1 {
			return false
		}
		return len(liveOptions(ve)) != 1
	case *kind.AnyOf:
		return len(liveOptions(ve)) != 1
	}
	for _, c := range ve.Causes {
		if aborts(c) {
			return true
		}
	}
	return false
}

// lookup finds the compiled subschema at a schema URL's JSON pointer.
func (s *Schema) lookup(url string) *jsonschema.Schema {
	_, ptr, ok := strings.Cut(url, "#")
	if !ok {
		return nil
	}
	cur := s.root
	toks := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	if ptr == "" {
		return cur
	}
	for i := 0; i < len(toks) && cur != nil; i++ {
		tok := strings.ReplaceAll(strings.ReplaceAll(toks[i], "~1", "/"), "~0", "~")
		next := func() (string, bool) {
			if i+1 >= len(toks) {
				return "", false
			}
			i++
			return strings.ReplaceAll(strings.ReplaceAll(toks[i], "~1", "/"), "~0", "~"), true
		}
		switch tok {
		case "properties":
			name, ok := next()
			if !ok {
				return nil
			}
			cur = cur.Properties[name]
		case "anyOf", "oneOf", "allOf":
			idx, ok := next()
			n, err := strconv.Atoi(idx)
			list := map[string][]*jsonschema.Schema{"anyOf": cur.AnyOf, "oneOf": cur.OneOf, "allOf": cur.AllOf}[tok]
			if !ok || err != nil || n < 0 || n >= len(list) {
				return nil
			}
			cur = list[n]
		case "items":
			it, _ := cur.Items.(*jsonschema.Schema)
			cur = it
		case "additionalProperties":
			ap, _ := cur.AdditionalProperties.(*jsonschema.Schema)
			cur = ap
		default:
			return nil
		}
	}
	return cur
}

// expectedOf names what a schema wants the way Zod's messages do.
func expectedOf(s *jsonschema.Schema) string {
	if s.Types != nil {
		return zodType(s.Types.ToStrings())
	}
	if s.Const != nil {
		return displayValue(*s.Const)
	}
	if s.Enum != nil && len(s.Enum.Values) > 0 {
		return displayValue(s.Enum.Values[0])
	}
	return "value"
}

func zodType(want []string) string {
	if len(want) == 1 {
		switch want[0] {
		case "integer":
			return "number"
		}
		return want[0]
	}
	return strings.Join(want, " | ")
}

func displayValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

func joinDisplay(values []any, sep string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = displayValue(v)
	}
	return strings.Join(quoted, sep)
}

// joinPath spells an instance location as OpenClaw's issues do.
func joinPath(p []string) string {
	if len(p) == 0 {
		return "<root>"
	}
	return strings.Join(p, ".")
}

func dedupeIssues(in []Issue) []Issue {
	seen := map[string]bool{}
	var out []Issue
	for _, i := range in {
		k := i.Path + "\x00" + i.Message
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, i)
	}
	return out
}

// IssuePaths returns the distinct paths of issues, in order.
func IssuePaths(issues []Issue) []string {
	seen := map[string]bool{}
	var out []string
	for _, i := range issues {
		if !seen[i.Path] {
			seen[i.Path] = true
			out = append(out, i.Path)
		}
	}
	return out
}

// InvalidConfig is what the real CLI prints instead of an audit when the
// config does not validate (`openclaw security audit --json` and
// `openclaw config validate --json` share it).
type InvalidConfig struct {
	OK     bool     `json:"ok"`
	Error  CLIError `json:"error"`
	Issues []Issue  `json:"issues"`
}

// CLIError is the error member of InvalidConfig.
type CLIError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// NewInvalidConfig shapes issues found in the config at path as the real
// CLI does.
func NewInvalidConfig(path string, issues []Issue) InvalidConfig {
	return InvalidConfig{
		Error:  CLIError{Type: "cli_error", Message: "OpenClaw config is invalid: " + path},
		Issues: issues,
	}
}

package setup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/clawgate/clawgate/caddymodule/internal/json5"
)

// file is one file of the config (the main one or an $include), as read and
// as edited so far.
type file struct {
	path    string
	data    []byte      // as read; Write refuses if the file no longer holds this
	info    os.FileInfo // as read (Lstat)
	text    []byte      // after the edits so far
	doc     *doc        // parse of text
	style   style       // of data, so our own insertions do not set it
	changed bool
}

// style is how a file writes what we add to it.
type style struct {
	keyQuote byte   // 0: identifiers unquoted
	strQuote byte   // '"' or '\''
	unit     string // one level of indentation
	trailing bool   // commas after the last member of multi-line objects
}

// editor applies ops to the config's files, one at a time, re-parsing after
// each, and checks every edit against the parsed tree.
type editor struct {
	main  *file
	files map[string]*file
	// plainSecrets are the merged paths of moved secrets written as literal
	// strings rather than ${VAR} references or SecretRefs.
	plainSecrets [][]string
}

// readFile reads one config file for editing.
func readFile(path string) (*file, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := parseDoc(filepath.Base(path), data)
	if err != nil {
		return nil, err
	}
	f := &file{path: path, data: data, info: info, text: data, doc: d}
	f.style = detectStyle(path, d)
	return f, nil
}

// loc is where one key of the merged config is written.
type loc struct {
	f      *file
	parent *json5.Node
	m      *json5.Member
	local  []string // the parent object's path inside f
}

// errUnsafe marks an edit setup will not make in the text, with the reason.
var errUnsafe = errors.New("cannot edit safely")

// lookup finds where key of the object obj (in f, at local) is written: in
// obj itself and in the files its $include pulls in.
func (ed *editor) lookup(obj *json5.Node, f *file, local []string, key string, depth int) ([]loc, error) {
	if depth > 10 {
		return nil, errors.New("$include nested too deeply")
	}
	var out []loc
	for _, m := range obj.Find(key) {
		out = append(out, loc{f: f, parent: obj, m: m, local: local})
	}
	incs := obj.Find("$include")
	if len(incs) > 1 {
		return nil, fmt.Errorf("%s: %w: $include appears twice in one object", f.path, errUnsafe)
	}
	if len(incs) == 0 {
		return out, nil
	}
	paths, err := ed.includePaths(f, incs[0].Value)
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		g := ed.files[p]
		if g == nil {
			return nil, fmt.Errorf("%s: %w: $include %s was not loaded with the config", f.path, errUnsafe, p)
		}
		if g.doc.root.Kind != json5.Object {
			return nil, fmt.Errorf("%s: %w: included file %s is not an object", f.path, errUnsafe, p)
		}
		sub, err := ed.lookup(g.doc.root, g, nil, key, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, sub...)
	}
	return out, nil
}

// includePaths resolves an $include value as the audit package's loader does.
func (ed *editor) includePaths(f *file, v *json5.Node) ([]string, error) {
	val := v.Decode()
	var rels []string
	switch t := val.(type) {
	case string:
		rels = []string{t}
	case []any:
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: $include entry is not a string", f.path)
			}
			rels = append(rels, s)
		}
	default:
		return nil, fmt.Errorf("%s: $include is neither a string nor a list", f.path)
	}
	out := make([]string, len(rels))
	for i, r := range rels {
		if !filepath.IsAbs(r) {
			r = filepath.Join(filepath.Dir(f.path), r)
		}
		out[i] = filepath.Clean(r)
	}
	return out, nil
}

// apply makes one op in the text of whichever file holds its path, and
// returns that file's path ("" when there was nothing to do).
func (ed *editor) apply(o op) (string, error) {
	f := ed.main
	obj := f.doc.root
	if obj.Kind != json5.Object {
		return "", fmt.Errorf("%s: the top level is not an object", f.path)
	}
	var local []string
	for i, key := range o.path {
		locs, err := ed.lookup(obj, f, local, key, 0)
		if err != nil {
			return "", err
		}
		if len(locs) > 1 {
			var where []string
			for _, l := range locs {
				where = append(where, l.f.path)
			}
			return "", fmt.Errorf("%s is written more than once (%s) and OpenClaw merges them: %w; keep it in one place and run setup again",
				PathString(o.path[:i+1]), strings.Join(slices.Compact(where), ", "), errUnsafe)
		}
		last := i == len(o.path)-1
		if len(locs) == 0 {
			if o.kind != opSet {
				return "", nil
			}
			f, obj, local = ed.insertionPoint(f, obj, local)
			return f.path, ed.insert(f, obj, local, key, nest(o.path[i+1:], o.value))
		}
		l := locs[0]
		if last {
			switch o.kind {
			case opSet:
				return l.f.path, ed.replace(l, o.value)
			case opDelete:
				return l.f.path, ed.remove(l)
			default:
				if v := l.f.text[l.m.Value.Start:l.m.Value.End]; (v[0] == '"' || v[0] == '\'') && !bytes.Contains(v, []byte("${")) {
					ed.plainSecrets = append(ed.plainSecrets, append(slices.Clone(o.path[:len(o.path)-1]), o.newKey))
				}
				return l.f.path, ed.rename(l, o.newKey)
			}
		}
		if l.m.Value.Kind != json5.Object {
			if o.kind != opSet {
				return "", nil
			}
			return l.f.path, ed.replace(l, nest(o.path[i+1:], o.value))
		}
		obj, f, local = l.m.Value, l.f, append(slices.Clone(l.local), key)
	}
	return "", nil
}

// insertionPoint follows an object that is nothing but an $include of one
// file into that file, so a new key lands next to the keys it belongs with;
// OpenClaw merges it the same either way.
func (ed *editor) insertionPoint(f *file, obj *json5.Node, local []string) (*file, *json5.Node, []string) {
	for depth := 0; depth < 10 && len(obj.Members) == 1 && obj.Members[0].Key == "$include"; depth++ {
		paths, err := ed.includePaths(f, obj.Members[0].Value)
		if err != nil || len(paths) != 1 {
			break
		}
		g := ed.files[paths[0]]
		if g == nil || g.doc.root.Kind != json5.Object {
			break
		}
		f, obj, local = g, g.doc.root, nil
	}
	return f, obj, local
}

// nest wraps value in objects for the keys of rest.
func nest(rest []string, value any) any {
	if len(rest) == 0 {
		return value
	}
	return obj{{rest[0], nest(rest[1:], value)}}
}

// splice is one replacement of f.text[start:end].
type splice struct {
	start, end int
	text       string
}

// commit applies splices to f (which must not overlap), re-parses it, and
// checks that the file's parsed tree changed exactly as lop says and in no
// other way.
func (ed *editor) commit(f *file, lop localOp, sp ...splice) error {
	slices.SortFunc(sp, func(a, b splice) int { return b.start - a.start })
	text := slices.Clone(f.text)
	limit := len(text)
	for _, s := range sp {
		if s.start < 0 || s.end < s.start || s.end > limit {
			return fmt.Errorf("%s: internal error: overlapping edits", f.path)
		}
		text = append(text[:s.start], append([]byte(s.text), text[s.end:]...)...)
		limit = s.start
	}
	nd, err := parseDoc(f.doc.name, text)
	if err != nil {
		return fmt.Errorf("%s: internal error: the edited text does not parse: %v", f.path, err)
	}
	before := f.doc.root.Decode()
	after := nd.root.Decode()
	want, err := lop.applyTo(before)
	if err != nil {
		return err
	}
	if !equalTree(after, want) {
		return fmt.Errorf("%s: internal error: editing %s would change more than that; nothing was written", f.path, PathString(lop.path))
	}
	f.text, f.doc, f.changed = text, nd, true
	return nil
}

// replace sets the value of an existing member.
func (ed *editor) replace(l loc, v any) error {
	if hasInclude(l.m.Value) {
		return fmt.Errorf("%s: %s is pulled in by $include: %w (replacing it would drop the include); edit it by hand",
			l.f.path, PathString(append(slices.Clone(l.local), l.m.Key)), errUnsafe)
	}
	indent := lineIndent(l.f.text, l.m.KeyStart)
	text := l.f.style.render(v, indent, true)
	return ed.commit(l.f, localOp{kind: opSet, path: append(slices.Clone(l.local), l.m.Key), value: v},
		splice{l.m.Value.Start, l.m.Value.End, text})
}

// rename gives an existing member a new key, keeping its value's text.
func (ed *editor) rename(l loc, newKey string) error {
	raw := l.f.text[l.m.KeyStart:l.m.KeyEnd]
	var key string
	switch {
	case raw[0] == '"' || raw[0] == '\'':
		key = quote(newKey, raw[0])
	case isIdent(newKey):
		key = newKey
	default:
		key = quote(newKey, '"')
	}
	path := append(slices.Clone(l.local), l.m.Key)
	return ed.commit(l.f, localOp{kind: opMove, path: path, newKey: newKey}, splice{l.m.KeyStart, l.m.KeyEnd, key})
}

// remove deletes an existing member, with its line when it had one to itself.
func (ed *editor) remove(l loc) error {
	text := l.f.text
	m := l.m
	start, end := m.KeyStart, m.Value.End
	if m.Comma >= 0 {
		end = m.Comma + 1
	}
	ls := lineStart(text, start)
	q := end
	for q < len(text) && (text[q] == ' ' || text[q] == '\t') {
		q++
	}
	if onlyBlank(text[ls:start]) && bytes.HasPrefix(text[q:], []byte("//")) {
		// A comment at the end of the member's own line is about the member.
		q = lineEnd(text, q)
	}
	if onlyBlank(text[ls:start]) && (q == len(text) || text[q] == '\n' || text[q] == '\r') {
		start = ls
		end = q
		if end < len(text) && text[end] == '\r' {
			end++
		}
		if end < len(text) && text[end] == '\n' {
			end++
		}
	} else {
		end = q
	}
	sp := []splice{{start, end, ""}}
	if m.Comma < 0 {
		idx := slices.Index(l.parent.Members, m)
		if idx > 0 {
			prev := l.parent.Members[idx-1]
			if prev.Comma >= 0 && onlyBlank(text[prev.Value.End:prev.Comma]) && prev.Comma < start {
				sp = append(sp, splice{prev.Comma, prev.Comma + 1, ""})
			}
		}
	}
	return ed.commit(l.f, localOp{kind: opDelete, path: append(slices.Clone(l.local), m.Key)}, sp...)
}

// insert adds key: v to the object obj of f, after its last member, in the
// layout of its neighbours.
func (ed *editor) insert(f *file, o *json5.Node, local []string, key string, v any) error {
	st := f.style
	text := f.text
	lop := localOp{kind: opSet, path: append(slices.Clone(local), key), value: v}
	k := st.renderKey(key)
	if len(o.Members) == 0 {
		closeAt := o.End - 1
		closeIndent := lineIndent(text, closeAt)
		inner := closeIndent + st.unit
		member := k + ": " + st.render(v, inner, true)
		if onlyBlank(text[o.Start+1 : closeAt]) {
			trail := ""
			if st.trailing {
				trail = ","
			}
			return ed.commit(f, lop, splice{o.Start + 1, closeAt, "\n" + inner + member + trail + "\n" + closeIndent})
		}
		// Only comments inside: the member goes first, the comments stay.
		return ed.commit(f, lop, splice{o.Start + 1, o.Start + 1, "\n" + inner + member + ","})
	}
	last := o.Members[len(o.Members)-1]
	after := last.Value.End
	if last.Comma >= 0 {
		after = last.Comma + 1
	}
	first := o.Members[0]
	multiline := bytes.ContainsAny(text[o.Start:first.KeyStart], "\n\r")
	if !multiline && explode(f, o, v) {
		indent := lineIndent(text, o.Start)
		inner := indent + st.unit
		var b strings.Builder
		b.WriteString("{")
		for _, m := range o.Members {
			b.WriteString("\n" + inner)
			b.Write(text[m.KeyStart:m.Value.End])
			b.WriteByte(',')
		}
		b.WriteString("\n" + inner + k + ": " + st.render(v, inner, true))
		if st.trailing {
			b.WriteByte(',')
		}
		b.WriteString("\n" + indent + "}")
		return ed.commit(f, lop, splice{o.Start, o.End, b.String()})
	}
	if !multiline {
		var s string
		if last.Comma >= 0 {
			s = " " + k + ": " + st.render(v, "", false) + ","
		} else {
			s = ", " + k + ": " + st.render(v, "", false)
		}
		return ed.commit(f, lop, splice{after, after, s})
	}
	// The new member goes on its own line after the last member's line, so a
	// comment at the end of that line stays with the member it is about.
	p := after
	for p < len(text) && (text[p] == ' ' || text[p] == '\t') {
		p++
	}
	switch {
	case bytes.HasPrefix(text[p:], []byte("//")):
		p = lineEnd(text, p)
	case bytes.HasPrefix(text[p:], []byte("/*")):
		if e := indexFrom(text, p+2, "*/"); e >= 0 && !bytes.ContainsAny(text[p:e], "\n\r") {
			p = e + 2
			for p < len(text) && (text[p] == ' ' || text[p] == '\t') {
				p++
			}
		}
	}
	if p < len(text) && text[p] != '\n' && text[p] != '\r' {
		p = after // something else follows on the line: insert right after the member
	}
	indent := lineIndent(text, last.KeyStart)
	member := "\n" + indent + k + ": " + st.render(v, indent, true)
	if last.Comma >= 0 {
		member += ","
		return ed.commit(f, lop, splice{p, p, member})
	}
	if p == last.Value.End {
		return ed.commit(f, lop, splice{p, p, "," + member})
	}
	return ed.commit(f, lop, splice{p, p, member}, splice{last.Value.End, last.Value.End, ","})
}

// explode reports whether inserting v into the one-line object o should
// first spread o over several lines: when v is an object, or the line would
// grow long, and o is part of a file laid out over lines and holds nothing
// but its members (no comments that a new layout would move).
func explode(f *file, o *json5.Node, v any) bool {
	text := f.text
	root := f.doc.root
	if o == root || !bytes.ContainsAny(text[root.Start:root.End], "\n\r") {
		return false
	}
	gaps := [][]byte{text[o.Start+1 : o.Members[0].KeyStart]}
	for i, m := range o.Members {
		next := o.End - 1
		if i+1 < len(o.Members) {
			next = o.Members[i+1].KeyStart
		}
		gaps = append(gaps, text[m.Value.End:next])
	}
	for _, g := range gaps {
		if !onlyBlank(bytes.ReplaceAll(g, []byte(","), nil)) {
			return false
		}
	}
	if _, isObj := v.(obj); isObj {
		return true
	}
	return lineEnd(text, o.End)-lineStart(text, o.Start) > 100
}

// hasInclude reports whether an $include appears anywhere in n.
func hasInclude(n *json5.Node) bool {
	for _, m := range n.Members {
		if m.Key == "$include" || hasInclude(m.Value) {
			return true
		}
	}
	for _, e := range n.Elems {
		if hasInclude(e) {
			return true
		}
	}
	return false
}

// lineIndent returns the white space that starts the line holding pos.
func lineIndent(text []byte, pos int) string {
	ls := lineStart(text, pos)
	e := ls
	for e < len(text) && (text[e] == ' ' || text[e] == '\t') {
		e++
	}
	return string(text[ls:e])
}

func onlyBlank(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if !json5.IsSpace(r) {
			return false
		}
		b = b[n:]
	}
	return true
}

// detectStyle learns how a file writes keys, strings, indentation and
// trailing commas from what is in it. A strict JSON file stays strict JSON.
func detectStyle(path string, d *doc) style {
	st := style{strQuote: '"', unit: "  "}
	if strings.EqualFold(filepath.Ext(path), ".json") && json.Valid(d.src) {
		st.keyQuote = '"'
		return st
	}
	keySeen, strSeen, unitSeen := false, false, false
	var walk func(n *json5.Node)
	walk = func(n *json5.Node) {
		if n.Kind == json5.Object && len(n.Members) > 0 {
			first := n.Members[0]
			if !keySeen {
				keySeen = true
				if c := d.src[first.KeyStart]; c == '"' || c == '\'' {
					st.keyQuote = c
				}
			}
			if !unitSeen && bytes.ContainsAny(d.src[n.Start:first.KeyStart], "\n\r") {
				outer := lineIndent(d.src, n.Start)
				inner := lineIndent(d.src, first.KeyStart)
				if u, ok := strings.CutPrefix(inner, outer); ok && u != "" {
					st.unit, unitSeen = u, true
				}
			}
			if last := n.Members[len(n.Members)-1]; last.Comma >= 0 && bytes.ContainsAny(d.src[n.Start:n.End], "\n\r") {
				st.trailing = true
			}
		}
		if n.Kind == json5.Scalar && !strSeen {
			if c := d.src[n.Start]; c == '"' || c == '\'' {
				st.strQuote, strSeen = c, true
			}
		}
		for _, m := range n.Members {
			walk(m.Value)
		}
		for _, e := range n.Elems {
			walk(e)
		}
	}
	walk(d.root)
	return st
}

func (st style) renderKey(k string) string {
	if st.keyQuote == 0 && isIdent(k) {
		return k
	}
	q := st.keyQuote
	if q == 0 {
		q = st.strQuote
	}
	return quote(k, q)
}

// render writes v at the given indentation; objects span lines when
// multiline is set.
func (st style) render(v any, indent string, multiline bool) string {
	switch t := v.(type) {
	case string:
		return quote(t, st.strQuote)
	case bool:
		return strconv.FormatBool(t)
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1e15 {
			return strconv.FormatInt(int64(t), 10)
		}
		return strconv.FormatFloat(t, 'g', -1, 64)
	case []string:
		parts := make([]string, len(t))
		for i, s := range t {
			parts[i] = quote(s, st.strQuote)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case obj:
		if len(t) == 0 {
			return "{}"
		}
		if !multiline {
			parts := make([]string, len(t))
			for i, e := range t {
				parts[i] = st.renderKey(e.k) + ": " + st.render(e.v, "", false)
			}
			return "{ " + strings.Join(parts, ", ") + " }"
		}
		var b strings.Builder
		b.WriteString("{\n")
		for i, e := range t {
			b.WriteString(indent + st.unit + st.renderKey(e.k) + ": " + st.render(e.v, indent+st.unit, true))
			if i < len(t)-1 || st.trailing {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "}")
		return b.String()
	}
	return "null"
}

// quote writes s as a JSON5 string literal with the given quote character.
func quote(s string, q byte) string {
	if q != '\'' {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		return strings.TrimSuffix(b.String(), "\n")
	}
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\\' || r == '\'':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// localOp is an op as it applies to one file's own tree.
type localOp struct {
	kind   opKind
	path   []string
	value  any
	newKey string
}

// applyTo returns a copy of tree with the op applied.
func (o localOp) applyTo(tree any) (any, error) {
	root := json5.Clone(tree, nil)
	m, ok := root.(map[string]any)
	if !ok || len(o.path) == 0 {
		return nil, errors.New("internal error: no object to edit")
	}
	for _, k := range o.path[:len(o.path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			if o.kind != opSet {
				return root, nil
			}
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	k := o.path[len(o.path)-1]
	switch o.kind {
	case opSet:
		m[k] = plain(o.value)
	case opDelete:
		delete(m, k)
	case opMove:
		if v, ok := m[k]; ok {
			delete(m, k)
			m[o.newKey] = v
		}
	}
	return root, nil
}

// plain converts a value to write into the shape the parser builds.
func plain(v any) any {
	switch t := v.(type) {
	case obj:
		m := make(map[string]any, len(t))
		for _, e := range t {
			m[e.k] = plain(e.v)
		}
		return m
	case []string:
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out
	}
	return v
}

// equalTree reports whether two parsed trees are equal, NaN equal to NaN.
func equalTree(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equalTree(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalTree(x[i], y[i]) {
				return false
			}
		}
		return true
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y))
	}
	return a == b
}

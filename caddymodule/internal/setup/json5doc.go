package setup

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
)

// doc is one JSON5 file with the byte spans of its values, so an edit can
// replace exactly the text of one value, or insert a member into one object,
// and leave every comment and all layout elsewhere as the user wrote it.
type doc struct {
	name string
	src  []byte
	root *node
}

type kind int

const (
	kindScalar kind = iota
	kindObject
	kindArray
)

// node is one value of a doc; src[start:end] is its text.
type node struct {
	kind       kind
	start, end int
	open       int       // objects and arrays: offset of '{' or '['; close is end-1
	members    []*member // objects, in source order
	elems      []*node   // arrays
}

// member is one key: value pair of an object.
type member struct {
	key              string
	keyStart, keyEnd int
	val              *node
	comma            int // offset of the comma after the value, or -1
}

// parseDoc parses src into a doc. The document is first parsed by the audit
// package's JSON5 parser, the one the audit and the gate use, so a file is
// accepted here exactly when it is accepted there; the span scanner then only
// ever sees valid JSON5.
func parseDoc(name string, src []byte) (*doc, error) {
	if _, err := audit.ParseJSON5(name, src); err != nil {
		return nil, err
	}
	s := &spanScanner{src: src}
	s.space()
	root := s.value(0)
	if s.err == nil {
		s.space()
		if s.pos != len(src) {
			s.fail("trailing text")
		}
	}
	if s.err != nil {
		return nil, fmt.Errorf("%s: locating values: %w", name, s.err)
	}
	return &doc{name: name, src: src, root: root}, nil
}

// spanScanner records where values are. It trusts that its input is valid
// JSON5 (parseDoc checked) but never indexes past the end: anything
// unexpected becomes an error.
type spanScanner struct {
	src []byte
	pos int
	err error
}

func (s *spanScanner) fail(msg string) {
	if s.err == nil {
		s.err = fmt.Errorf("offset %d: %s", s.pos, msg)
	}
	s.pos = len(s.src)
}

func (s *spanScanner) peek() (rune, int) {
	if s.pos >= len(s.src) {
		return -1, 0
	}
	if c := s.src[s.pos]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRune(s.src[s.pos:])
}

// space skips white space and comments.
func (s *spanScanner) space() {
	for s.pos < len(s.src) {
		r, n := s.peek()
		if isSpace(r) {
			s.pos += n
			continue
		}
		if r != '/' || s.pos+1 >= len(s.src) {
			return
		}
		switch s.src[s.pos+1] {
		case '/':
			s.pos = lineEnd(s.src, s.pos)
		case '*':
			end := indexFrom(s.src, s.pos+2, "*/")
			if end < 0 {
				s.fail("unterminated comment")
				return
			}
			s.pos = end + 2
		default:
			return
		}
	}
}

func (s *spanScanner) value(depth int) *node {
	if depth > audit.MaxJSON5Depth {
		s.fail("nesting too deep")
		return nil
	}
	if s.pos >= len(s.src) {
		s.fail("unexpected end")
		return nil
	}
	switch s.src[s.pos] {
	case '{':
		return s.object(depth + 1)
	case '[':
		return s.array(depth + 1)
	case '"', '\'':
		start := s.pos
		s.str()
		return &node{kind: kindScalar, start: start, end: s.pos}
	}
	start := s.pos
	for s.pos < len(s.src) {
		r, n := s.peek()
		if r == ',' || r == '}' || r == ']' || r == '/' || isSpace(r) {
			break
		}
		s.pos += n
	}
	if s.pos == start {
		s.fail("empty value")
		return nil
	}
	return &node{kind: kindScalar, start: start, end: s.pos}
}

// str skips a quoted string; a backslash always escapes the next character
// (a CR LF pair after it is one line continuation).
func (s *spanScanner) str() {
	quote := s.src[s.pos]
	s.pos++
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; c {
		case quote:
			s.pos++
			return
		case '\\':
			s.pos += 2
			if s.pos-1 < len(s.src) && s.src[s.pos-1] == '\r' && s.pos < len(s.src) && s.src[s.pos] == '\n' {
				s.pos++
			}
		default:
			s.pos++
		}
	}
	s.fail("unterminated string")
}

func (s *spanScanner) object(depth int) *node {
	n := &node{kind: kindObject, start: s.pos, open: s.pos}
	s.pos++
	for s.err == nil {
		s.space()
		if s.pos >= len(s.src) {
			s.fail("unterminated object")
			break
		}
		if s.src[s.pos] == '}' {
			s.pos++
			n.end = s.pos
			return n
		}
		m := &member{keyStart: s.pos, comma: -1}
		if c := s.src[s.pos]; c == '"' || c == '\'' {
			s.str()
		} else {
			for s.pos < len(s.src) {
				r, w := s.peek()
				if r == ':' || r == '/' || isSpace(r) {
					break
				}
				s.pos += w
			}
		}
		m.keyEnd = s.pos
		if s.err != nil {
			break
		}
		key, err := decodeKey(s.src[m.keyStart:m.keyEnd])
		if err != nil {
			s.fail(err.Error())
			break
		}
		m.key = key
		s.space()
		if s.pos >= len(s.src) || s.src[s.pos] != ':' {
			s.fail("expected ':'")
			break
		}
		s.pos++
		s.space()
		m.val = s.value(depth)
		if s.err != nil {
			break
		}
		n.members = append(n.members, m)
		s.space()
		if s.pos < len(s.src) && s.src[s.pos] == ',' {
			m.comma = s.pos
			s.pos++
		}
	}
	return nil
}

func (s *spanScanner) array(depth int) *node {
	n := &node{kind: kindArray, start: s.pos, open: s.pos}
	s.pos++
	for s.err == nil {
		s.space()
		if s.pos >= len(s.src) {
			s.fail("unterminated array")
			break
		}
		if s.src[s.pos] == ']' {
			s.pos++
			n.end = s.pos
			return n
		}
		v := s.value(depth)
		if s.err != nil {
			break
		}
		n.elems = append(n.elems, v)
		s.space()
		if s.pos < len(s.src) && s.src[s.pos] == ',' {
			s.pos++
		}
	}
	return nil
}

// decodeKey returns the name a member key stands for, decoded by the audit
// package's parser so quoting and \u escapes mean what they mean there.
func decodeKey(raw []byte) (string, error) {
	if len(raw) == 0 {
		return "", errors.New("empty key")
	}
	if raw[0] == '"' || raw[0] == '\'' {
		v, err := audit.ParseJSON5("key", raw)
		if err != nil {
			return "", err
		}
		s, ok := v.(string)
		if !ok {
			return "", errors.New("key is not a string")
		}
		return s, nil
	}
	plain := true
	for _, c := range raw {
		if !(c == '$' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			plain = false
			break
		}
	}
	if plain {
		return string(raw), nil
	}
	wrapped := append(append([]byte("{"), raw...), ":0}"...)
	v, err := audit.ParseJSON5("key", wrapped)
	if err != nil {
		return "", err
	}
	m, _ := v.(map[string]any)
	if len(m) != 1 {
		return "", errors.New("key does not decode to one name")
	}
	for k := range m {
		return k, nil
	}
	return "", nil
}

// decode returns the value a node stands for, as the audit package's parser
// would build it.
func (d *doc) decode(n *node) (any, error) {
	switch n.kind {
	case kindObject:
		out := make(map[string]any, len(n.members))
		for _, m := range n.members {
			v, err := d.decode(m.val)
			if err != nil {
				return nil, err
			}
			out[m.key] = v
		}
		return out, nil
	case kindArray:
		out := make([]any, 0, len(n.elems))
		for _, e := range n.elems {
			v, err := d.decode(e)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return audit.ParseJSON5(d.name, d.src[n.start:n.end])
}

// find returns the members of object n named key: one, none, or more when
// the file repeats a key (JSON5 lets the last one win).
func (n *node) find(key string) []*member {
	var out []*member
	for _, m := range n.members {
		if m.key == key {
			out = append(out, m)
		}
	}
	return out
}

// isSpace reports whether r is JSON5 white space (ECMAScript WhiteSpace and
// LineTerminator).
func isSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', '\u00a0', '\u2028', '\u2029', '\ufeff':
		return true
	}
	return r > 0x7f && unicode.Is(unicode.Zs, r)
}

// lineEnd returns the offset of the line terminator that ends the line
// holding pos, or len(src).
func lineEnd(src []byte, pos int) int {
	for pos < len(src) {
		c := src[pos]
		if c == '\n' || c == '\r' {
			return pos
		}
		if c == 0xe2 && pos+2 < len(src) && src[pos+1] == 0x80 && (src[pos+2] == 0xa8 || src[pos+2] == 0xa9) {
			return pos
		}
		pos++
	}
	return pos
}

// lineStart returns the offset of the first byte of the line holding pos.
func lineStart(src []byte, pos int) int {
	for pos > 0 {
		c := src[pos-1]
		if c == '\n' || c == '\r' {
			return pos
		}
		if c == 0xa8 || c == 0xa9 {
			if pos >= 3 && src[pos-3] == 0xe2 && src[pos-2] == 0x80 {
				return pos
			}
		}
		pos--
	}
	return 0
}

func indexFrom(src []byte, from int, sub string) int {
	for i := from; i+len(sub) <= len(src); i++ {
		if string(src[i:i+len(sub)]) == sub {
			return i
		}
	}
	return -1
}

// Package json5 parses JSON5 (https://spec.json5.org), the format of
// OpenClaw's config files, for both of clawgate's readers of them: Parse
// gives the values, as the audit and the gate need them, and ParseTree gives
// the same values with the byte span of every value, key and comma, so setup
// can edit one value in the text and leave comments and layout as the user
// wrote them. Both are one parser, so a file means the same to both. The
// input is untrusted: sizes and nesting are capped, and every error is a
// *ParseError with a line and column.
package json5

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on untrusted JSON5 input. OpenClaw caps each config file at 2 MB;
// the depth cap keeps the recursive descent off the end of the stack.
const (
	MaxBytes = 2 << 20
	MaxDepth = 256
)

// ParseError locates a JSON5 syntax error. Line and Col are 1-based; Col
// counts characters, not bytes, so it matches what an editor shows.
type ParseError struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *ParseError) Error() string {
	name := e.File
	if name == "" {
		name = "<input>"
	}
	return fmt.Sprintf("%s:%d:%d: %s", name, e.Line, e.Col, e.Msg)
}

// Parse parses one JSON5 document. Objects become map[string]any
// (duplicate keys: the last one wins, as in JavaScript), arrays []any,
// numbers float64 (Infinity and NaN included), strings string, and null nil.
// name is used only in error messages.
func Parse(name string, data []byte) (any, error) {
	v, _, err := parse(name, data, false)
	return v, err
}

// ParseTree parses one JSON5 document as Parse does, accepting and refusing
// exactly the same inputs, and returns the root of its tree of values with
// their spans in data.
func ParseTree(name string, data []byte) (*Node, error) {
	_, n, err := parse(name, data, true)
	return n, err
}

// Clone deep-copies a value Parse returns: every object and array is new,
// and every other value becomes leaf(value), or stays itself when leaf is
// nil.
func Clone(v any, leaf func(any) any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = Clone(e, leaf)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = Clone(e, leaf)
		}
		return out
	}
	if leaf != nil {
		return leaf(v)
	}
	return v
}

func parse(name string, data []byte, tree bool) (any, *Node, error) {
	if len(data) > MaxBytes {
		return nil, nil, &ParseError{File: name, Line: 1, Col: 1, Msg: fmt.Sprintf("input is %d bytes, more than the %d byte limit", len(data), MaxBytes)}
	}
	p := &parser{name: name, src: data, tree: tree}
	p.skipSpace()
	if p.err != nil {
		return nil, nil, p.err
	}
	if p.pos >= len(p.src) {
		return nil, nil, p.fail(p.pos, "unexpected end of input")
	}
	v, n := p.value(0)
	if p.err != nil {
		return nil, nil, p.err
	}
	p.skipSpace()
	if p.err != nil {
		return nil, nil, p.err
	}
	if p.pos < len(p.src) {
		return nil, nil, p.unexpected(p.pos)
	}
	return v, n, nil
}

// Kind is what a Node holds.
type Kind uint8

const (
	// Scalar is a string, number, boolean or null.
	Scalar Kind = iota
	// Object is a JSON5 object.
	Object
	// Array is a JSON5 array.
	Array
)

// Node is one value of a document parsed by ParseTree; src[Start:End] is its
// text, from the first byte of the value to just after its last ('{' to
// '}' for an object).
type Node struct {
	Kind       Kind
	Start, End int
	// Members are an object's members in source order, repeated keys
	// included.
	Members []*Member
	// Elems are an array's elements.
	Elems []*Node

	scalar any
}

// Member is one key: value pair of an object.
type Member struct {
	// Key is the name the key stands for, quotes and escapes resolved.
	Key string
	// KeyStart and KeyEnd are the span of the key as written.
	KeyStart, KeyEnd int
	// Value is the member's value.
	Value *Node
	// Comma is the offset of the comma after the value, or -1 when none
	// follows it.
	Comma int
}

// Decode returns the value n stands for, as Parse builds it. Every call
// builds a new value, which the caller may change.
func (n *Node) Decode() any {
	switch n.Kind {
	case Object:
		out := make(map[string]any, len(n.Members))
		for _, m := range n.Members {
			out[m.Key] = m.Value.Decode()
		}
		return out
	case Array:
		out := make([]any, 0, len(n.Elems))
		for _, e := range n.Elems {
			out = append(out, e.Decode())
		}
		return out
	}
	return n.scalar
}

// Find returns the members of object n named key: one, none, or more when
// the document repeats the key (the last one wins).
func (n *Node) Find(key string) []*Member {
	var out []*Member
	for _, m := range n.Members {
		if m.Key == key {
			out = append(out, m)
		}
	}
	return out
}

// parser reads one document. With tree set it builds Nodes (and no maps or
// slices of values); without, it builds the values alone.
type parser struct {
	name string
	src  []byte
	pos  int
	err  *ParseError
	tree bool
}

// scalar wraps a scalar value that started at start in a Node, when
// building a tree.
func (p *parser) scalar(v any, start int) (any, *Node) {
	if !p.tree || p.err != nil {
		return v, nil
	}
	return v, &Node{Kind: Scalar, Start: start, End: p.pos, scalar: v}
}

// fail records the first error only: later ones are consequences.
func (p *parser) fail(at int, format string, args ...any) *ParseError {
	if p.err == nil {
		line, col := p.lineCol(at)
		p.err = &ParseError{File: p.name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
	}
	return p.err
}

func (p *parser) unexpected(at int) *ParseError {
	if at >= len(p.src) {
		return p.fail(at, "unexpected end of input")
	}
	r, _ := utf8.DecodeRune(p.src[at:])
	return p.fail(at, "unexpected character %s", quoteChar(r))
}

func quoteChar(r rune) string {
	if r == utf8.RuneError {
		return "(invalid UTF-8)"
	}
	if r == '\'' {
		return `"'"`
	}
	if unicode.IsPrint(r) {
		return "'" + string(r) + "'"
	}
	return fmt.Sprintf("U+%04X", r)
}

// lineCol converts a byte offset to a 1-based line and character column.
// Line terminators are those of JSON5: LF, CR, CRLF, U+2028 and U+2029.
func (p *parser) lineCol(at int) (int, int) {
	line, col := 1, 1
	for i := 0; i < at && i < len(p.src); {
		r, n := utf8.DecodeRune(p.src[i:])
		switch r {
		case '\r':
			if i+1 < len(p.src) && p.src[i+1] == '\n' {
				n = 2
			}
			line, col = line+1, 1
		case '\n', '\u2028', '\u2029':
			line, col = line+1, 1
		default:
			col++
		}
		i += n
	}
	return line, col
}

func (p *parser) peekRune() (rune, int) {
	if p.pos >= len(p.src) {
		return -1, 0
	}
	c := p.src[p.pos]
	if c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRune(p.src[p.pos:])
}

func isLineTerminator(r rune) bool {
	return r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029'
}

// IsSpace reports whether r is JSON5 white space: the ECMAScript
// WhiteSpace and LineTerminator productions.
func IsSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', '\u00a0', '\u2028', '\u2029', '\ufeff':
		return true
	}
	return r > 0x7f && unicode.Is(unicode.Zs, r)
}

// skipSpace skips white space and comments.
func (p *parser) skipSpace() {
	for p.pos < len(p.src) {
		r, n := p.peekRune()
		if IsSpace(r) {
			p.pos += n
			continue
		}
		if r != '/' || p.pos+1 >= len(p.src) {
			return
		}
		switch p.src[p.pos+1] {
		case '/':
			p.pos += 2
			for p.pos < len(p.src) {
				r, n := p.peekRune()
				if isLineTerminator(r) {
					break
				}
				p.pos += n
			}
		case '*':
			start := p.pos
			end := strings.Index(string(p.src[p.pos+2:]), "*/")
			if end < 0 {
				p.fail(start, "unterminated block comment")
				p.pos = len(p.src)
				return
			}
			p.pos += 2 + end + 2
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (any, *Node) {
	if p.err != nil {
		return nil, nil
	}
	if p.pos >= len(p.src) {
		p.unexpected(p.pos)
		return nil, nil
	}
	start := p.pos
	switch c := p.src[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"' || c == '\'':
		return p.scalar(p.str(), start)
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9') || c == 'I' || c == 'N':
		return p.scalar(p.number(), start)
	case c == 't':
		return p.scalar(p.literal("true", true), start)
	case c == 'f':
		return p.scalar(p.literal("false", false), start)
	case c == 'n':
		return p.scalar(p.literal("null", nil), start)
	}
	p.unexpected(p.pos)
	return nil, nil
}

func (p *parser) literal(word string, v any) any {
	for i := 0; i < len(word); i++ {
		if p.pos+i >= len(p.src) || p.src[p.pos+i] != word[i] {
			p.unexpected(p.pos + i)
			return nil
		}
	}
	p.pos += len(word)
	return v
}

func (p *parser) object(depth int) (any, *Node) {
	if depth > MaxDepth {
		p.fail(p.pos, "nesting deeper than %d", MaxDepth)
		return nil, nil
	}
	var obj map[string]any
	var node *Node
	if p.tree {
		node = &Node{Kind: Object, Start: p.pos}
	} else {
		obj = map[string]any{}
	}
	p.pos++ // '{'
	for {
		p.skipSpace()
		if p.err != nil {
			return nil, nil
		}
		if p.pos < len(p.src) && p.src[p.pos] == '}' {
			p.pos++
			return p.closed(obj, node)
		}
		keyStart := p.pos
		key, ok := p.key()
		if !ok {
			return nil, nil
		}
		keyEnd := p.pos
		p.skipSpace()
		if p.err != nil {
			return nil, nil
		}
		if p.pos >= len(p.src) || p.src[p.pos] != ':' {
			p.unexpected(p.pos)
			return nil, nil
		}
		p.pos++
		p.skipSpace()
		v, vn := p.value(depth)
		if p.err != nil {
			return nil, nil
		}
		var m *Member
		if p.tree {
			m = &Member{Key: key, KeyStart: keyStart, KeyEnd: keyEnd, Value: vn, Comma: -1}
			node.Members = append(node.Members, m)
		} else {
			obj[key] = v
		}
		p.skipSpace()
		if p.err != nil {
			return nil, nil
		}
		if p.pos >= len(p.src) {
			p.unexpected(p.pos)
			return nil, nil
		}
		switch p.src[p.pos] {
		case ',':
			if m != nil {
				m.Comma = p.pos
			}
			p.pos++
		case '}':
			p.pos++
			return p.closed(obj, node)
		default:
			p.unexpected(p.pos)
			return nil, nil
		}
	}
}

// closed ends an object or array whose closing bracket was just read.
func (p *parser) closed(v any, n *Node) (any, *Node) {
	if n != nil {
		n.End = p.pos
		return nil, n
	}
	return v, nil
}

func (p *parser) array(depth int) (any, *Node) {
	if depth > MaxDepth {
		p.fail(p.pos, "nesting deeper than %d", MaxDepth)
		return nil, nil
	}
	var arr []any
	var node *Node
	if p.tree {
		node = &Node{Kind: Array, Start: p.pos}
	} else {
		arr = []any{}
	}
	p.pos++ // '['
	for {
		p.skipSpace()
		if p.err != nil {
			return nil, nil
		}
		if p.pos < len(p.src) && p.src[p.pos] == ']' {
			p.pos++
			return p.closed(arr, node)
		}
		v, vn := p.value(depth)
		if p.err != nil {
			return nil, nil
		}
		if p.tree {
			node.Elems = append(node.Elems, vn)
		} else {
			arr = append(arr, v)
		}
		p.skipSpace()
		if p.err != nil {
			return nil, nil
		}
		if p.pos >= len(p.src) {
			p.unexpected(p.pos)
			return nil, nil
		}
		switch p.src[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return p.closed(arr, node)
		default:
			p.unexpected(p.pos)
			return nil, nil
		}
	}
}

// key parses a member name: a string or an ECMAScript IdentifierName
// (reserved words included, \u escapes allowed).
func (p *parser) key() (string, bool) {
	if p.pos >= len(p.src) {
		p.unexpected(p.pos)
		return "", false
	}
	if c := p.src[p.pos]; c == '"' || c == '\'' {
		s := p.str()
		return s, p.err == nil
	}
	var b strings.Builder
	first := true
	for p.pos < len(p.src) {
		start := p.pos
		r, n := p.peekRune()
		if r == '\\' {
			if p.pos+1 >= len(p.src) || p.src[p.pos+1] != 'u' {
				p.unexpected(p.pos + 1)
				return "", false
			}
			p.pos += 2
			esc, ok := p.hex(4)
			if !ok {
				return "", false
			}
			r = rune(esc)
			if !(first && isIDStart(r)) && !(!first && isIDPart(r)) {
				p.fail(start, "invalid identifier character %s", quoteChar(r))
				return "", false
			}
		} else {
			if r == utf8.RuneError && n <= 1 {
				p.unexpected(p.pos)
				return "", false
			}
			if first && !isIDStart(r) || !first && !isIDPart(r) {
				if first {
					p.unexpected(p.pos)
					return "", false
				}
				break
			}
			p.pos += n
		}
		b.WriteRune(r)
		first = false
	}
	if first {
		p.unexpected(p.pos)
		return "", false
	}
	return b.String(), true
}

func isIDStart(r rune) bool {
	return r == '$' || r == '_' || unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Lm, unicode.Lo, unicode.Nl)
}

func isIDPart(r rune) bool {
	return isIDStart(r) || r == '\u200c' || r == '\u200d' || unicode.In(r, unicode.Mn, unicode.Mc, unicode.Nd, unicode.Pc)
}

// hex reads exactly n hex digits.
func (p *parser) hex(n int) (int, bool) {
	v := 0
	for i := 0; i < n; i++ {
		if p.pos >= len(p.src) {
			p.unexpected(p.pos)
			return 0, false
		}
		c := p.src[p.pos]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			p.unexpected(p.pos)
			return 0, false
		}
		v = v<<4 | int(d)
		p.pos++
	}
	return v, true
}

// str parses a single- or double-quoted string. Surrogate pairs written as
// two \u escapes are joined; a lone surrogate becomes U+FFFD, as Go's
// encoding/json does, since Go strings cannot hold one.
func (p *parser) str() string {
	quote := p.src[p.pos]
	start := p.pos
	p.pos++
	var b strings.Builder
	for {
		if p.pos >= len(p.src) {
			p.fail(start, "unterminated string")
			return ""
		}
		c := p.src[p.pos]
		if c == quote {
			p.pos++
			return b.String()
		}
		if c == '\n' || c == '\r' {
			p.fail(p.pos, "line break inside string (escape it or use \\ to continue the line)")
			return ""
		}
		if c != '\\' {
			if c < utf8.RuneSelf {
				b.WriteByte(c)
				p.pos++
				continue
			}
			r, n := utf8.DecodeRune(p.src[p.pos:])
			b.WriteRune(r) // invalid UTF-8 becomes U+FFFD
			p.pos += n
			continue
		}
		// escape
		escAt := p.pos
		p.pos++
		if p.pos >= len(p.src) {
			p.fail(start, "unterminated string")
			return ""
		}
		r, n := p.peekRune()
		switch r {
		case '\'', '"', '\\', '/':
			b.WriteRune(r)
			p.pos++
		case 'b':
			b.WriteByte('\b')
			p.pos++
		case 'f':
			b.WriteByte('\f')
			p.pos++
		case 'n':
			b.WriteByte('\n')
			p.pos++
		case 'r':
			b.WriteByte('\r')
			p.pos++
		case 't':
			b.WriteByte('\t')
			p.pos++
		case 'v':
			b.WriteByte('\v')
			p.pos++
		case '0':
			p.pos++
			if p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
				p.fail(p.pos, "octal escapes are not allowed")
				return ""
			}
			b.WriteByte(0)
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			p.fail(escAt, "invalid escape \\%c", r)
			return ""
		case 'x':
			p.pos++
			v, ok := p.hex(2)
			if !ok {
				return ""
			}
			b.WriteRune(rune(v))
		case 'u':
			p.pos++
			v, ok := p.hex(4)
			if !ok {
				return ""
			}
			r := rune(v)
			if utf16IsHigh(r) {
				if lo, ok := p.lowSurrogate(); ok {
					r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
				} else {
					r = utf8.RuneError
				}
			} else if utf16IsLow(r) {
				r = utf8.RuneError
			}
			b.WriteRune(r)
		case '\r':
			p.pos++
			if p.pos < len(p.src) && p.src[p.pos] == '\n' {
				p.pos++
			}
		case '\n', '\u2028', '\u2029':
			p.pos += n // line continuation
		default:
			if r == utf8.RuneError && n <= 1 {
				b.WriteRune(utf8.RuneError)
				p.pos++
				continue
			}
			b.WriteRune(r) // any other character escapes to itself
			p.pos += n
		}
		if p.err != nil {
			return ""
		}
	}
}

func utf16IsHigh(r rune) bool { return r >= 0xd800 && r < 0xdc00 }
func utf16IsLow(r rune) bool  { return r >= 0xdc00 && r < 0xe000 }

// lowSurrogate consumes a following \uDC00–\uDFFF escape if there is one.
func (p *parser) lowSurrogate() (rune, bool) {
	if p.pos+6 > len(p.src) || p.src[p.pos] != '\\' || p.src[p.pos+1] != 'u' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.src[p.pos+2:p.pos+6]), 16, 16)
	if err != nil || !utf16IsLow(rune(v)) {
		return 0, false
	}
	p.pos += 6
	return rune(v), true
}

// number parses JSON5 numbers: optional sign, Infinity, NaN, hex integers,
// and decimals with a leading or trailing point.
func (p *parser) number() any {
	start := p.pos
	sign := 1.0
	if c := p.src[p.pos]; c == '+' || c == '-' {
		if c == '-' {
			sign = -1
		}
		p.pos++
	}
	rest := p.src[p.pos:]
	switch {
	case hasWord(rest, "Infinity"):
		p.pos += len("Infinity")
		return math.Inf(int(sign))
	case hasWord(rest, "NaN"):
		p.pos += len("NaN")
		return math.NaN()
	case len(rest) >= 2 && rest[0] == '0' && (rest[1] == 'x' || rest[1] == 'X'):
		p.pos += 2
		digits := p.pos
		var v float64
		for p.pos < len(p.src) && isHexDigit(p.src[p.pos]) {
			d, _ := strconv.ParseUint(string(p.src[p.pos]), 16, 8)
			v = v*16 + float64(d)
			p.pos++
		}
		if p.pos == digits {
			p.unexpected(p.pos)
			return nil
		}
		if p.pos < len(p.src) && isIDPart(rune(p.src[p.pos])) {
			p.unexpected(p.pos)
			return nil
		}
		return sign * v
	}
	numStart := p.pos
	intDigits := p.digits()
	if intDigits > 1 && p.src[numStart] == '0' {
		p.fail(numStart, "leading zeros are not allowed")
		return nil
	}
	fracDigits := 0
	if p.pos < len(p.src) && p.src[p.pos] == '.' {
		p.pos++
		fracDigits = p.digits()
	}
	if intDigits == 0 && fracDigits == 0 {
		p.unexpected(p.pos)
		return nil
	}
	if p.pos < len(p.src) && (p.src[p.pos] == 'e' || p.src[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.src) && (p.src[p.pos] == '+' || p.src[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			p.unexpected(p.pos)
			return nil
		}
	}
	// A number must not run straight into an identifier ("1a", "2true").
	if p.pos < len(p.src) {
		if r, _ := p.peekRune(); isIDStart(r) || r == '\\' {
			p.unexpected(p.pos)
			return nil
		}
	}
	text := string(p.src[numStart:p.pos])
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		// Only range errors reach here; JavaScript rounds them to ±Infinity
		// or 0, and so does ParseFloat's returned value.
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			p.fail(start, "invalid number %q", text)
			return nil
		}
	}
	return sign * v
}

func (p *parser) digits() int {
	n := 0
	for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
		p.pos++
		n++
	}
	return n
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// hasWord reports whether b starts with word not followed by an identifier
// character, so "Infinityx" is not Infinity.
func hasWord(b []byte, word string) bool {
	if len(b) < len(word) || string(b[:len(word)]) != word {
		return false
	}
	if len(b) == len(word) {
		return true
	}
	r, _ := utf8.DecodeRune(b[len(word):])
	return !isIDPart(r)
}

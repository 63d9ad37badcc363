package senders

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The webhook bodies we judge are read again by the gateway behind us, with a different JSON parser
// (Node's JSON.parse). Any input the two parsers could read differently is a way to show the edge one
// sender and the gateway another, so this parser accepts a strict subset of RFC 8259 and refuses
// everything where readers disagree:
//   - duplicate keys in any object (JSON.parse keeps the last, many Go decoders the first), compared
//     after escapes are decoded, so {"from":1,"fr\u006fm":2} is a duplicate too;
//   - invalid UTF-8 anywhere and \u escapes that are lone surrogates (replaced by U+FFFD in one
//     reader, kept as-is in another);
//   - a byte-order mark, trailing data, and a top level that is not an object;
//   - nesting deeper than maxDepth (no webhook payload comes close; deep nesting only costs us stack).
// Rejecting duplicates everywhere, not only on the sender path, is stricter than needed and simpler
// to reason about: no real provider sends them.

// maxDepth bounds object/array nesting.
const maxDepth = 256

// errDuplicateKey is wrapped by parse errors caused by a repeated object key.
var errDuplicateKey = errors.New("duplicate key")

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k kind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "boolean"
	case kindNumber:
		return "number"
	case kindString:
		return "string"
	case kindArray:
		return "array"
	case kindObject:
		return "object"
	}
	return "invalid"
}

// value is one parsed JSON value. Arrays and objects share items; array items have empty keys.
type value struct {
	kind  kind
	s     string // decoded string, number literal, or "true"/"false"
	items []member
}

type member struct {
	key string
	val value
}

// get returns the member named key of an object, and whether it exists.
func (v *value) get(key string) (*value, bool) {
	if v.kind != kindObject {
		return nil, false
	}
	for i := range v.items {
		if v.items[i].key == key {
			return &v.items[i].val, true
		}
	}
	return nil, false
}

// parseObject parses data as a single JSON object under the strict rules above.
func parseObject(data []byte) (value, error) {
	p := parser{data: data, scratch: make([]member, 0, 16)}
	p.skipSpace()
	if p.pos >= len(p.data) || p.data[p.pos] != '{' {
		return value{}, fmt.Errorf("json: top level is not an object")
	}
	v, err := p.value(0)
	if err != nil {
		return value{}, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return value{}, fmt.Errorf("json: offset %d: trailing data after the top-level object", p.pos)
	}
	return v, nil
}

type parser struct {
	data []byte
	pos  int
	// scratch holds the members of the objects and arrays being parsed, innermost last; each is
	// copied out at its final size when it closes, so no items slice is grown by appending.
	scratch []member
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("json: offset %d: "+format, append([]any{p.pos}, args...)...)
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (value, error) {
	p.skipSpace()
	if p.pos >= len(p.data) {
		return value{}, p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.str()
		return value{kind: kindString, s: s}, err
	case c == '-' || (c >= '0' && c <= '9'):
		s, err := p.number()
		return value{kind: kindNumber, s: s}, err
	case c == 't':
		return value{kind: kindBool, s: "true"}, p.literal("true")
	case c == 'f':
		return value{kind: kindBool, s: "false"}, p.literal("false")
	case c == 'n':
		return value{kind: kindNull}, p.literal("null")
	default:
		return value{}, p.errorf("unexpected byte %q", c)
	}
}

func (p *parser) literal(lit string) error {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return p.errorf("invalid literal")
	}
	p.pos += len(lit)
	return nil
}

func (p *parser) object(depth int) (value, error) {
	if depth > maxDepth {
		return value{}, p.errorf("nesting deeper than %d", maxDepth)
	}
	p.pos++ // '{'
	base := len(p.scratch)
	defer func() { p.scratch = p.scratch[:base] }()
	var seen map[string]struct{} // built only for large objects; small ones are scanned
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return value{kind: kindObject}, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return value{}, p.errorf("expected object key")
		}
		keyAt := p.pos
		key, err := p.str()
		if err != nil {
			return value{}, err
		}
		items := p.scratch[base:]
		if seen == nil && len(items) >= 16 {
			seen = make(map[string]struct{}, 2*len(items))
			for _, m := range items {
				seen[m.key] = struct{}{}
			}
		}
		dup := false
		if seen != nil {
			_, dup = seen[key]
			seen[key] = struct{}{}
		} else {
			for i := range items {
				if items[i].key == key {
					dup = true
					break
				}
			}
		}
		if dup {
			return value{}, fmt.Errorf("json: offset %d: %w %q", keyAt, errDuplicateKey, key)
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return value{}, p.errorf("expected ':' after object key")
		}
		p.pos++
		val, err := p.value(depth)
		if err != nil {
			return value{}, err
		}
		p.scratch = append(p.scratch, member{key: key, val: val})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return value{}, p.errorf("unterminated object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return value{kind: kindObject, items: slices.Clone(p.scratch[base:])}, nil
		default:
			return value{}, p.errorf("expected ',' or '}' in object")
		}
	}
}

func (p *parser) array(depth int) (value, error) {
	if depth > maxDepth {
		return value{}, p.errorf("nesting deeper than %d", maxDepth)
	}
	p.pos++ // '['
	base := len(p.scratch)
	defer func() { p.scratch = p.scratch[:base] }()
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return value{kind: kindArray}, nil
	}
	for {
		val, err := p.value(depth)
		if err != nil {
			return value{}, err
		}
		p.scratch = append(p.scratch, member{val: val})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return value{}, p.errorf("unterminated array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return value{kind: kindArray, items: slices.Clone(p.scratch[base:])}, nil
		default:
			return value{}, p.errorf("expected ',' or ']' in array")
		}
	}
}

// number scans an RFC 8259 number and returns its literal text.
func (p *parser) number() (string, error) {
	start := p.pos
	d := p.data
	i := p.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		p.pos = i
		return "", p.errorf("invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return "", p.errorf("invalid number fraction")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			p.pos = i
			return "", p.errorf("invalid number exponent")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	p.pos = i
	return string(d[start:i]), nil
}

// str scans a string starting at the opening quote and returns it decoded.
func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	d := p.data
	// Fast path: no escapes, so the decoded string is the raw bytes once they are valid UTF-8.
	for i := start; i < len(d); {
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return string(d[start:i]), nil
		case c == '\\':
			return p.strSlow(start)
		case c < 0x20:
			p.pos = i
			return "", p.errorf("control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size <= 1 {
				p.pos = i
				return "", p.errorf("invalid UTF-8 in string")
			}
			i += size
		}
	}
	p.pos = len(d)
	return "", p.errorf("unterminated string")
}

func (p *parser) strSlow(start int) (string, error) {
	d := p.data
	buf := make([]byte, 0, 2*(len(d)-start)/3+8)
	i := start
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return string(buf), nil
		case c == '\\':
			if i+1 >= len(d) {
				p.pos = i
				return "", p.errorf("unterminated escape")
			}
			e := d[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := hex4(d, i)
				if !ok {
					p.pos = i
					return "", p.errorf("invalid \\u escape")
				}
				i += 4
				if utf16.IsSurrogate(r) {
					// Only a high surrogate followed by an escaped low surrogate is a character.
					var r2 rune = -1
					if r < 0xDC00 && i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
						r2, ok = hex4(d, i+2)
						if !ok {
							r2 = -1
						}
					}
					dec := utf16.DecodeRune(r, r2)
					if dec == utf8.RuneError {
						p.pos = i
						return "", p.errorf("lone surrogate in \\u escape")
					}
					i += 6
					r = dec
				}
				buf = utf8.AppendRune(buf, r)
			default:
				p.pos = i - 1
				return "", p.errorf("invalid escape %q", e)
			}
		case c < 0x20:
			p.pos = i
			return "", p.errorf("control character in string")
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size <= 1 {
				p.pos = i
				return "", p.errorf("invalid UTF-8 in string")
			}
			buf = append(buf, d[i:i+size]...)
			i += size
		}
	}
	p.pos = len(d)
	return "", p.errorf("unterminated string")
}

func hex4(d []byte, i int) (rune, bool) {
	if i+4 > len(d) {
		return 0, false
	}
	var r rune
	for _, c := range d[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// maxSafeInteger is 2^53-1: JavaScript reads larger integer literals inexactly, so the gateway
// would not see the number the edge compared.
const maxSafeInteger = 1<<53 - 1

// idString turns a JSON id (an integer number or a string) into the string the gateway derives
// with String(x). ok is false for any other kind and for numbers JavaScript would not read exactly
// (fractions, exponents, magnitudes beyond 2^53-1), which no provider sends as an id.
func idString(v *value) (string, bool) {
	switch v.kind {
	case kindString:
		return v.s, v.s != ""
	case kindNumber:
		n, err := strconv.ParseInt(v.s, 10, 64)
		if err != nil || n > maxSafeInteger || n < -maxSafeInteger {
			return "", false
		}
		return strconv.FormatInt(n, 10), true
	}
	return "", false
}

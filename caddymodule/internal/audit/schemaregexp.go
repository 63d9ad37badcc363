package audit

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// OpenClaw's schema carries ECMAScript patterns, and a few use negative
// lookahead, which Go's RE2 does not have. Every such pattern in the
// recorded schemas has one shape: "^" P (?!L1)(?!L2)… R, where P and R are
// lookahead-free, or a trailing (?![\s\S]), which only says "end of input".
// ecmaRegexp matches that shape exactly: some split s = s[:i] + s[i:] where
// ^P$ matches s[:i], no ^Lk matches s[i:], and ^R matches s[i:]. Any other
// pattern Go cannot compile fails the schema's compilation, so an unknown
// construct is never silently ignored.

type ecmaRegexp struct {
	src        string
	prefix     *regexp.Regexp // ^P$
	lookaheads []*regexp.Regexp
	rest       *regexp.Regexp // ^R
}

func (r *ecmaRegexp) String() string { return r.src }

// MatchString reports whether s matches the pattern.
func (r *ecmaRegexp) MatchString(s string) bool {
	for i := 0; i <= len(s); i++ {
		if !r.prefix.MatchString(s[:i]) {
			continue
		}
		tail := s[i:]
		blocked := false
		for _, l := range r.lookaheads {
			if l.MatchString(tail) {
				blocked = true
				break
			}
		}
		if !blocked && r.rest.MatchString(tail) {
			return true
		}
	}
	return false
}

// compileSchemaRegexp is the schema compiler's regexp engine.
func compileSchemaRegexp(src string) (jsonschema.Regexp, error) {
	pat := strings.ReplaceAll(src, `(?![\s\S])`, `\z`)
	if re, err := regexp.Compile(pat); err == nil {
		if pat == src {
			return re, nil
		}
		return &wrappedRegexp{src: src, re: re}, nil
	}
	body, ok := strings.CutPrefix(pat, "^")
	if !ok {
		return nil, fmt.Errorf("pattern %q: lookahead outside an anchored pattern is not supported", src)
	}
	start := strings.Index(body, "(?!")
	if start < 0 {
		_, err := regexp.Compile(pat)
		return nil, err
	}
	r := &ecmaRegexp{src: src}
	var err error
	if r.prefix, err = regexp.Compile(`^(?:` + body[:start] + `)\z`); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", src, err)
	}
	rest := body[start:]
	for strings.HasPrefix(rest, "(?!") {
		end := groupEnd(rest)
		if end < 0 {
			return nil, fmt.Errorf("pattern %q: unbalanced lookahead", src)
		}
		l, err := regexp.Compile(`^(?:` + rest[3:end] + `)`)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", src, err)
		}
		r.lookaheads = append(r.lookaheads, l)
		rest = rest[end+1:]
	}
	if strings.Contains(rest, "(?!") || strings.Contains(rest, "(?=") {
		return nil, fmt.Errorf("pattern %q: lookahead after the first run is not supported", src)
	}
	if r.rest, err = regexp.Compile(`^(?:` + rest + `)`); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", src, err)
	}
	return r, nil
}

// groupEnd returns the index of the ")" closing the group that opens s, or
// -1, skipping escapes and character classes.
func groupEnd(s string) int {
	depth, inClass := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// wrappedRegexp keeps the schema's own spelling in messages.
type wrappedRegexp struct {
	src string
	re  *regexp.Regexp
}

func (w *wrappedRegexp) String() string            { return w.src }
func (w *wrappedRegexp) MatchString(s string) bool { return w.re.MatchString(s) }

package audit

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"

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
	prefixMax  int            // the most bytes P can match, so a match costs O(len) not O(len²)
	lookaheads []*regexp.Regexp
	rest       *regexp.Regexp // ^R
}

func (r *ecmaRegexp) String() string { return r.src }

// MatchString reports whether s matches the pattern.
func (r *ecmaRegexp) MatchString(s string) bool {
	for i := 0; i <= len(s) && i <= r.prefixMax; i++ {
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
	if r.prefixMax = maxMatchLen(body[:start]); r.prefixMax < 0 {
		return nil, fmt.Errorf("pattern %q: a lookahead after an unbounded prefix is not supported", src)
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

// maxMatchLen returns the most bytes a lookahead-free pattern can match,
// or -1 when that is unbounded.
func maxMatchLen(pat string) int {
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return -1
	}
	return maxLen(re)
}

func maxLen(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0
	case syntax.OpLiteral:
		return len(re.Rune) * utf8.UTFMax
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax
	case syntax.OpCapture:
		return maxLen(re.Sub[0])
	case syntax.OpQuest:
		return maxLen(re.Sub[0])
	case syntax.OpRepeat:
		n := maxLen(re.Sub[0])
		if re.Max < 0 || n < 0 {
			return -1
		}
		return re.Max * n
	case syntax.OpConcat, syntax.OpAlternate:
		total := 0
		for _, sub := range re.Sub {
			n := maxLen(sub)
			if n < 0 {
				return -1
			}
			if re.Op == syntax.OpConcat {
				total += n
			} else {
				total = max(total, n)
			}
		}
		return total
	}
	return -1 // star, plus and anything unforeseen
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

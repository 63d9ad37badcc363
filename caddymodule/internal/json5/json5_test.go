package json5

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// The first cases are the examples of the JSON5 specification
// (https://spec.json5.org), section by section.
var json5ValidTests = []struct {
	name string
	in   string
	want any
}{
	{"spec overview", `// comments
{
  unquoted: 'and you can quote me on that',
  singleQuotes: 'I can use "double quotes" here',
  lineBreaks: "Look, Mom! \
No \\n's!",
  hexadecimal: 0xdecaf,
  leadingDecimalPoint: .8675309, andTrailing: 8675309.,
  positiveSign: +1,
  trailingComma: 'in objects', andIn: ['arrays',],
  "backwardsCompatible": "with JSON",
}`, map[string]any{
		"unquoted":            "and you can quote me on that",
		"singleQuotes":        `I can use "double quotes" here`,
		"lineBreaks":          `Look, Mom! No \n's!`,
		"hexadecimal":         float64(0xdecaf),
		"leadingDecimalPoint": 0.8675309,
		"andTrailing":         8675309.0,
		"positiveSign":        1.0,
		"trailingComma":       "in objects",
		"andIn":               []any{"arrays"},
		"backwardsCompatible": "with JSON",
	}},
	{"spec objects", `{
    // an object with two properties
    // and a trailing comma
    width: 1920,
    height: 1080,
}`, map[string]any{"width": 1920.0, "height": 1080.0}},
	{"spec arrays", `[1, true, 'three',]`, []any{1.0, true, "three"}},
	{"spec nested arrays", `[
    [1, true, 'three'],
    [4, "five", 0x6],
]`, []any{[]any{1.0, true, "three"}, []any{4.0, "five", 6.0}}},
	{"spec string continuation", "'Lorem ipsum dolor sit amet, \\\nconsectetur adipiscing elit.'", "Lorem ipsum dolor sit amet, consectetur adipiscing elit."},
	{"spec escapes", `'\A\C\/\D\C'`, "AC/DC"},
	{"spec numbers", `[123.456, .456, 123., +1, 0xC8, 1e3, -Infinity, +Infinity]`,
		[]any{123.456, 0.456, 123.0, 1.0, 200.0, 1000.0, math.Inf(-1), math.Inf(1)}},
	{"spec comments", `/* multi
line */ {/**/a/**/:/**/1/**/}// end`, map[string]any{"a": 1.0}},
	{"reserved words as keys", `{null: 1, true: 2, if: 3, $_x9: 4}`, map[string]any{"null": 1.0, "true": 2.0, "if": 3.0, "$_x9": 4.0}},
	{"unicode identifier", `{ħëllø: 1, \u0061b: 2}`, map[string]any{"ħëllø": 1.0, "ab": 2.0}},
	{"all escapes", `"\b\f\n\r\t\v\0\x41\u00e8\uD83D\uDE00\'\""`, "\b\f\n\r\t\v\x00Aè😀'\""},
	{"lone surrogate", `"\uD800x"`, "\uFFFDx"},
	{"crlf continuation", "'a\\\r\nb'", "ab"},
	{"ls ps in string", "'a\u2028b\u2029c'", "a\u2028b\u2029c"},
	{"exotic whitespace", "\ufeff\u00a0\v\f\u2003{a:1}\u2028", map[string]any{"a": 1.0}},
	{"duplicate key last wins", `{a: 1, a: 2}`, map[string]any{"a": 2.0}},
	{"hex negative", `-0x10`, -16.0},
	{"exponent sign", `[1E+2, 2e-1, -.5e1]`, []any{100.0, 0.2, -5.0}},
	{"empty containers", `{a: {}, b: []}`, map[string]any{"a": map[string]any{}, "b": []any{}}},
	{"top-level scalars", ` null `, nil},
	{"overflow is infinity", `1e400`, math.Inf(1)},
}

func TestParseValid(t *testing.T) {
	for _, tt := range json5ValidTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("t.json5", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseNaN(t *testing.T) {
	for _, in := range []string{"NaN", "+NaN", "-NaN"} {
		got, err := Parse("", []byte(in))
		if err != nil {
			t.Fatalf("Parse(%q) error: %v", in, err)
		}
		if f, ok := got.(float64); !ok || !math.IsNaN(f) {
			t.Errorf("Parse(%q) = %v, want NaN", in, got)
		}
	}
}

var json5InvalidTests = []struct {
	name string
	in   string
	want string // the whole error message
}{
	{"stray close brace", "{\n  a: 1,\n  b: ,\n}", "openclaw.json:3:6: unexpected character ','"},
	{"unexpected brace", "{\n  a: [1,\n  }", "openclaw.json:3:3: unexpected character '}'"},
	{"empty", "", "openclaw.json:1:1: unexpected end of input"},
	{"only comment", "// nothing", "openclaw.json:1:11: unexpected end of input"},
	{"unterminated comment", "{/* a", "openclaw.json:1:2: unterminated block comment"},
	{"unterminated string", `{a: 'x`, "openclaw.json:1:5: unterminated string"},
	{"raw newline in string", "'a\nb'", "openclaw.json:1:3: line break inside string (escape it or use \\ to continue the line)"},
	{"leading zero", `01`, "openclaw.json:1:1: leading zeros are not allowed"},
	{"octal escape", `'\01'`, "openclaw.json:1:4: octal escapes are not allowed"},
	{"digit escape", `'\1'`, `openclaw.json:1:2: invalid escape \1`},
	{"bad hex escape", `'\xG0'`, "openclaw.json:1:4: unexpected character 'G'"},
	{"two commas", `[1,,2]`, "openclaw.json:1:4: unexpected character ','"},
	{"leading comma", `[,]`, "openclaw.json:1:2: unexpected character ','"},
	{"missing colon", `{a 1}`, "openclaw.json:1:4: unexpected character '1'"},
	{"numeric key", `{1: 2}`, "openclaw.json:1:2: unexpected character '1'"},
	{"trailing garbage", `{} x`, "openclaw.json:1:4: unexpected character 'x'"},
	{"number into identifier", `[1a]`, "openclaw.json:1:3: unexpected character 'a'"},
	{"lone dot", `.`, "openclaw.json:1:2: unexpected end of input"},
	{"bare hex prefix", `0x`, "openclaw.json:1:3: unexpected end of input"},
	{"undefined", `undefined`, "openclaw.json:1:1: unexpected character 'u'"},
	{"truncated true", `tru`, "openclaw.json:1:4: unexpected end of input"},
	{"column counts characters", "{ħ: 'é', ?}", "openclaw.json:1:10: unexpected character '?'"},
	{"crlf lines", "{\r\n\r\n ]", "openclaw.json:3:2: unexpected character ']'"},
	{"identifier escape not id", `{\u0020a: 1}`, `openclaw.json:1:2: invalid identifier character ' '`},
	{"single quote char", `{'a' 'b'}`, `openclaw.json:1:6: unexpected character "'"`},
}

func TestParseInvalid(t *testing.T) {
	for _, tt := range json5InvalidTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("openclaw.json", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q) = %#v, want error %q", tt.in, got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse(%q) error = %q, want %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, err := Parse("", []byte(deep)); err != nil {
		t.Errorf("depth %d: unexpected error %v", MaxDepth, err)
	}
	tooDeep := strings.Repeat("{a:", MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	if _, err := Parse("", []byte(tooDeep)); err == nil || !strings.Contains(err.Error(), "nesting deeper than 256") {
		t.Errorf("depth %d: error = %v, want nesting error", MaxDepth+1, err)
	}
	big := make([]byte, MaxBytes+1)
	for i := range big {
		big[i] = ' '
	}
	big[0] = '1'
	if _, err := Parse("big.json", big); err == nil || !strings.Contains(err.Error(), "byte limit") {
		t.Errorf("oversized input: error = %v, want size error", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range json5ValidTests {
		f.Add([]byte(tt.in))
	}
	for _, tt := range json5InvalidTests {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte(`{"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00","d":-0.5e-3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse("fuzz.json5", data)
		if err != nil {
			var pe *ParseError
			if !asParseError(err, &pe) || pe.Line < 1 || pe.Col < 1 {
				t.Fatalf("ParseJSON5 error %v is not a located *ParseError", err)
			}
		}
		if !json.Valid(data) {
			return
		}
		var want any
		if jerr := json.Unmarshal(data, &want); jerr != nil {
			return // valid JSON that Go cannot hold (e.g. 1e400): no oracle
		}
		if err != nil {
			if strings.Contains(err.Error(), "nesting deeper") {
				return
			}
			t.Fatalf("Parse(%q) error %v, encoding/json accepts it", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Parse(%q) = %#v, encoding/json = %#v", data, got, want)
		}
	})
}

func asParseError(err error, target **ParseError) bool {
	pe, ok := err.(*ParseError)
	if ok {
		*target = pe
	}
	return ok
}

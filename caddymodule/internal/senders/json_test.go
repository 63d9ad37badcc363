package senders

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

var parseTests = []struct {
	name string
	in   string
	ok   bool
	dup  bool // the failure is a duplicate key
}{
	{"empty object", `{}`, true, false},
	{"spaces around", " \t\r\n{ } \n", true, false},
	{"nested", `{"a":{"b":[1,2,{"c":null}],"d":true,"e":false},"f":"x"}`, true, false},
	{"numbers", `{"a":[0,-0,1.5,-12e+3,3E-2,123456789012345678901234567890]}`, true, false},
	{"escapes", `{"a":"\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00"}`, true, false},
	{"raw utf8", `{"a":"héllo 😀"}`, true, false},
	{"empty key", `{"":1}`, true, false},

	{"empty input", ``, false, false},
	{"only spaces", `   `, false, false},
	{"top-level array", `[{"a":1}]`, false, false},
	{"top-level string", `"a"`, false, false},
	{"top-level number", `1`, false, false},
	{"top-level null", `null`, false, false},
	{"byte-order mark", "\ufeff{}", false, false},
	{"trailing data", `{}{}`, false, false},
	{"trailing garbage", `{} x`, false, false},
	{"trailing comma object", `{"a":1,}`, false, false},
	{"trailing comma array", `{"a":[1,]}`, false, false},
	{"missing colon", `{"a" 1}`, false, false},
	{"missing comma", `{"a":1 "b":2}`, false, false},
	{"unquoted key", `{a:1}`, false, false},
	{"single quotes", `{'a':1}`, false, false},
	{"unterminated object", `{"a":1`, false, false},
	{"unterminated string", `{"a":"x`, false, false},
	{"unterminated array", `{"a":[1`, false, false},
	{"leading zero", `{"a":01}`, false, false},
	{"lone minus", `{"a":-}`, false, false},
	{"dot without digits", `{"a":1.}`, false, false},
	{"leading dot", `{"a":.5}`, false, false},
	{"exponent without digits", `{"a":1e}`, false, false},
	{"plus sign", `{"a":+1}`, false, false},
	{"NaN", `{"a":NaN}`, false, false},
	{"bad literal", `{"a":tru}`, false, false},
	{"capital literal", `{"a":True}`, false, false},
	{"control char", "{\"a\":\"x\ny\"}", false, false},
	{"bad escape", `{"a":"\x"}`, false, false},
	{"short unicode escape", `{"a":"\u12"}`, false, false},
	{"non-hex unicode escape", `{"a":"\u12g4"}`, false, false},
	{"lone high surrogate", `{"a":"\ud800"}`, false, false},
	{"lone low surrogate", `{"a":"\udc00"}`, false, false},
	{"high then non-low", `{"a":"\ud800\u0041"}`, false, false},
	{"high then text", `{"a":"\ud800x"}`, false, false},
	{"invalid utf8", "{\"a\":\"\xff\"}", false, false},
	{"overlong utf8", "{\"a\":\"\xc0\xaf\"}", false, false},
	{"utf8 surrogate", "{\"a\":\"\xed\xa0\x80\"}", false, false},
	{"invalid utf8 in key", "{\"\xfe\":1}", false, false},
	{"comment", `{"a":1 /* c */}`, false, false},
	{"utf8 after escape", `{"a":"\n é 😀"}`, true, false},
	{"control char after escape", "{\"a\":\"\\n\x01\"}", false, false},
	{"invalid utf8 after escape", "{\"a\":\"\\n\xff\"}", false, false},
	{"unterminated after escape", `{"a":"\n`, false, false},
	{"unterminated escape", `{"a":"\`, false, false},
	{"upper-case hex escape", `{"a":"\u00C9\uD83D\uDE00"}`, true, false},

	{"duplicate key", `{"from":1,"from":2}`, false, true},
	{"duplicate after escape", `{"from":{"id":1},"fr\u006fm":{"id":2}}`, false, true},
	{"duplicate nested", `{"message":{"from":{"id":1,"id":2}}}`, false, true},
	{"duplicate in array element", `{"events":[{"a":1},{"b":1,"b":2}]}`, false, true},
	{"duplicate empty key", `{"":1,"":2}`, false, true},
	{"duplicate in big object", `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k3":3}`, false, true},
	{"duplicate last in big object", `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k16":3}`, false, true},
	{"distinct big object", `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17}`, true, false},
	{"same key in sibling objects", `{"a":{"id":1},"b":{"id":1}}`, true, false},
	{"keys differing in case", `{"from":1,"From":2}`, true, false},
}

func TestParseObject(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseObject([]byte(tt.in))
			if got := err == nil; got != tt.ok {
				t.Fatalf("parseObject(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if got := errors.Is(err, errDuplicateKey); got != tt.dup {
				t.Errorf("parseObject(%q) error = %v, duplicate-key error = %v, want %v", tt.in, err, got, tt.dup)
			}
		})
	}
}

func TestParseObjectDepth(t *testing.T) {
	nest := func(n int) string {
		// n levels of nesting in total, the outermost being the top-level object.
		return strings.Repeat(`{"a":`, n-1) + "{}" + strings.Repeat("}", n-1)
	}
	tests := []struct {
		depth int
		ok    bool
	}{{1, true}, {maxDepth, true}, {maxDepth + 1, false}, {100000, false}}
	for _, tt := range tests {
		_, err := parseObject([]byte(nest(tt.depth)))
		if got := err == nil; got != tt.ok {
			t.Errorf("parseObject(depth %d) error = %v, want ok=%v", tt.depth, err, tt.ok)
		}
	}
	arr := `{"a":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + "}"
	if _, err := parseObject([]byte(arr)); err == nil {
		t.Errorf("parseObject(%d nested arrays under the top object) succeeded, want depth error", maxDepth)
	}
}

func TestParseObjectValues(t *testing.T) {
	// Decoded values must agree with encoding/json on everything both accept.
	for _, tt := range parseTests {
		if !tt.ok {
			continue
		}
		got, err := parseObject([]byte(tt.in))
		if err != nil {
			t.Fatalf("parseObject(%q): %v", tt.in, err)
		}
		want := stdDecode(t, []byte(tt.in))
		if !reflect.DeepEqual(toAny(&got), want) {
			t.Errorf("parseObject(%q) = %#v, encoding/json = %#v", tt.in, toAny(&got), want)
		}
	}
}

func TestIDString(t *testing.T) {
	tests := []struct {
		in     string // a JSON object {"id": …}
		want   string
		wantOK bool
	}{
		{`{"id":123456789}`, "123456789", true},
		{`{"id":-1001234567890}`, "-1001234567890", true},
		{`{"id":-0}`, "0", true},
		{`{"id":9007199254740991}`, "9007199254740991", true},
		{`{"id":9007199254740992}`, "", false},
		{`{"id":-9007199254740992}`, "", false},
		{`{"id":1.0}`, "", false},
		{`{"id":1e3}`, "", false},
		{`{"id":"123"}`, "123", true},
		{`{"id":"U0123ABC"}`, "U0123ABC", true},
		{`{"id":"\u0031\u0032\u0033"}`, "123", true},
		{`{"id":""}`, "", false},
		{`{"id":true}`, "", false},
		{`{"id":null}`, "", false},
		{`{"id":{"id":1}}`, "", false},
		{`{"id":[1]}`, "", false},
	}
	for _, tt := range tests {
		v, err := parseObject([]byte(tt.in))
		if err != nil {
			t.Fatalf("parseObject(%q): %v", tt.in, err)
		}
		idv, _ := v.get("id")
		got, ok := idString(idv)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("idString(%s) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzParseObject checks the parser against encoding/json: whatever it accepts, encoding/json
// accepts and decodes to the same values; whatever encoding/json accepts that is also valid UTF-8,
// an object, free of duplicate keys and lone surrogates, and not too deep, it accepts.
func FuzzParseObject(f *testing.F) {
	for _, tt := range parseTests {
		f.Add([]byte(tt.in))
	}
	for _, s := range payloadSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseObject(data)
		if err == nil {
			if !json.Valid(data) {
				t.Fatalf("parseObject accepted %q, encoding/json rejects it", data)
			}
			if want := stdDecode(t, data); !reflect.DeepEqual(toAny(&got), want) {
				t.Fatalf("parseObject(%q) = %#v, encoding/json = %#v", data, toAny(&got), want)
			}
			return
		}
		if !json.Valid(data) || !utf8.Valid(data) || surrogateEscape.Match(data) {
			return
		}
		dup, depth := stdShape(data)
		top := bytes.TrimLeft(data, " \t\r\n")
		if dup || depth > maxDepth || len(top) == 0 || top[0] != '{' {
			return
		}
		t.Fatalf("parseObject(%q) = %v, but it is strict JSON that encoding/json accepts", data, err)
	})
}

var surrogateEscape = regexp.MustCompile(`\\u[dD][89a-fA-F]`)

func stdDecode(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("encoding/json cannot decode %q: %v", data, err)
	}
	return v
}

// stdShape walks data with encoding/json's tokenizer and reports whether any object repeats a key
// and how deep the nesting goes: an implementation independent of ours.
func stdShape(data []byte) (dup bool, depth int) {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		keys     map[string]bool
		isObject bool
		wantKey  bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return dup, depth
		}
		if err != nil {
			return dup, depth
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if len(stack) > 0 && stack[len(stack)-1].isObject {
					stack[len(stack)-1].wantKey = true
				}
				stack = append(stack, frame{keys: map[string]bool{}, isObject: d == '{', wantKey: d == '{'})
				depth = max(depth, len(stack))
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if len(stack) == 0 {
			continue
		}
		top := &stack[len(stack)-1]
		if top.isObject {
			if top.wantKey {
				k := tok.(string)
				if top.keys[k] {
					dup = true
				}
				top.keys[k] = true
			}
			top.wantKey = !top.wantKey
		}
	}
}

// toAny converts a parsed value to what encoding/json with UseNumber produces.
func toAny(v *value) any {
	switch v.kind {
	case kindNull:
		return nil
	case kindBool:
		return v.s == "true"
	case kindNumber:
		return json.Number(v.s)
	case kindString:
		return v.s
	case kindArray:
		out := make([]any, 0, len(v.items))
		for i := range v.items {
			out = append(out, toAny(&v.items[i].val))
		}
		return out
	case kindObject:
		out := make(map[string]any, len(v.items))
		for i := range v.items {
			out[v.items[i].key] = toAny(&v.items[i].val)
		}
		return out
	}
	panic(fmt.Sprintf("bad kind %d", v.kind))
}

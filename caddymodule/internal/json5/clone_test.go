package json5

import (
	"reflect"
	"testing"
)

func TestCloneCopiesObjectsAndArrays(t *testing.T) {
	v, err := Parse("c.json5", []byte(`{a: [1, {b: "x"}], c: null, d: true}`))
	if err != nil {
		t.Fatal(err)
	}
	c := Clone(v, nil)
	if !reflect.DeepEqual(c, v) {
		t.Fatalf("Clone = %#v, want %#v", c, v)
	}
	c.(map[string]any)["a"].([]any)[1].(map[string]any)["b"] = "changed"
	c.(map[string]any)["a"].([]any)[0] = 2.0
	if got := v.(map[string]any)["a"].([]any)[1].(map[string]any)["b"]; got != "x" {
		t.Errorf("editing the clone changed the original's nested object: %v", got)
	}
	if got := v.(map[string]any)["a"].([]any)[0]; got != 1.0 {
		t.Errorf("editing the clone changed the original's array: %v", got)
	}
}

func TestCloneMapsLeaves(t *testing.T) {
	v, err := Parse("c.json5", []byte(`{a: [1, "s"], b: 2}`))
	if err != nil {
		t.Fatal(err)
	}
	double := func(x any) any {
		if f, ok := x.(float64); ok {
			return 2 * f
		}
		return x
	}
	want := map[string]any{"a": []any{2.0, "s"}, "b": 4.0}
	if got := Clone(v, double); !reflect.DeepEqual(got, want) {
		t.Errorf("Clone with a leaf func = %#v, want %#v", got, want)
	}
	if got := Clone(3.0, double); got != 6.0 {
		t.Errorf("a bare leaf = %v, want 6", got)
	}
}

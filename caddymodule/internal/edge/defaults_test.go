package edge

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// ForwardedHeaders is what the gateway may require, so it must be exactly
// what SetForwardHeaders sends besides the user and the scopes.
func TestForwardedHeadersAreWhatIsSent(t *testing.T) {
	h := http.Header{}
	err := SetForwardHeaders(h, Forward{
		ClientIP: netip.MustParseAddr("100.64.0.7"), Proto: "https", Host: "gw.example.ts.net",
		UserHeader: DefaultUserHeader, User: "alice@example.com", Scopes: []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range h {
		k = strings.ToLower(k)
		if k != DefaultUserHeader && k != "x-openclaw-scopes" {
			got = append(got, k)
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(ForwardedHeaders()))
	if !slices.Equal(got, want) {
		t.Errorf("SetForwardHeaders sets %q besides the user and scopes, ForwardedHeaders() = %q", got, want)
	}
	for _, k := range want {
		if h.Get(k) == "" {
			t.Errorf("SetForwardHeaders left %s empty", k)
		}
	}
	if h.Get(DefaultUserHeader) != "alice@example.com" {
		t.Errorf("%s = %q, want the user", DefaultUserHeader, h.Get(DefaultUserHeader))
	}
}

func TestGatewayRequiredHeadersAreSent(t *testing.T) {
	sent := ForwardedHeaders()
	req := GatewayRequiredHeaders()
	if len(req) == 0 {
		t.Fatal("GatewayRequiredHeaders() is empty: a gateway would accept requests that bypass clawgate")
	}
	for _, k := range req {
		if !slices.Contains(sent, k) {
			t.Errorf("GatewayRequiredHeaders() holds %q, which the guard never sends", k)
		}
	}
	// Each call returns a fresh list, so no caller can change another's.
	ForwardedHeaders()[0] = "x-changed"
	GatewayRequiredHeaders()[0] = "x-changed"
	if slices.Contains(ForwardedHeaders(), "x-changed") || slices.Contains(GatewayRequiredHeaders(), "x-changed") {
		t.Error("a caller changed the shared list of headers")
	}
}

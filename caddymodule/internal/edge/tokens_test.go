package edge

import (
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewTokenSetErrors(t *testing.T) {
	secret := []byte("0123456789abcdef")
	h := sha256.Sum256([]byte("another-secret-value"))
	tests := []struct {
		name    string
		specs   []TokenSpec
		wantErr string
	}{
		{"empty name", []TokenSpec{{Secret: secret}}, "tokens[0]: empty name"},
		{"bad name", []TokenSpec{{Name: "c i", Secret: secret}}, `token "c i": name must match`},
		{"star name", []TokenSpec{{Name: "*", Secret: secret}}, `token "*": name must match`},
		{"duplicate name", []TokenSpec{{Name: "ci", Secret: secret}, {Name: "ci", Hash: h[:]}}, `token "ci": duplicate name`},
		{"duplicate secret", []TokenSpec{{Name: "a", Secret: secret}, {Name: "b", Secret: []byte(string(secret))}}, `token "b": same secret as token "a"`},
		{"duplicate secret via hash", []TokenSpec{{Name: "a", Hash: h[:]}, {Name: "b", Secret: []byte("another-secret-value")}}, `token "b": same secret as token "a"`},
		{"short secret", []TokenSpec{{Name: "ci", Secret: []byte("0123456789abcde")}}, `token "ci": secret shorter than 16 bytes`},
		{"empty secret", []TokenSpec{{Name: "ci", Secret: []byte{}}}, `token "ci": secret shorter than 16 bytes`},
		{"bad hash length", []TokenSpec{{Name: "ci", Hash: h[:31]}}, `token "ci": hash must be 32 bytes`},
		{"hash and secret disagree", []TokenSpec{{Name: "ci", Secret: secret, Hash: h[:]}}, `token "ci": hash does not match secret`},
		{"neither", []TokenSpec{{Name: "ci"}}, `token "ci": no secret or hash`},
		{"bad user", []TokenSpec{{Name: "ci", Secret: secret, User: "a,b"}}, `token "ci": invalid user`},
		{"bad scope", []TokenSpec{{Name: "ci", Secret: secret, Scopes: []string{"Operator.Read"}}}, `token "ci": invalid scope`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTokenSet(tt.specs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewTokenSet() error = %v, want containing %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), string(secret)) {
				t.Errorf("NewTokenSet() error %q leaks the secret", err)
			}
		})
	}
}

func TestTokenLookup(t *testing.T) {
	ciSecret := "ci-secret-0123456789"
	opsSecret := "ops-secret-abcdefghij"
	oldSecret := "old-secret-abcdefghij"
	opsHash := sha256.Sum256([]byte(opsSecret))
	set, err := NewTokenSet([]TokenSpec{
		{Name: "ci", Secret: []byte(ciSecret), Scopes: []string{"operator.read"}},
		{Name: "ops", Hash: opsHash[:], User: "Ops@Example.com"},
		{Name: "old", Secret: []byte(oldSecret), Expires: testNow},
	})
	if err != nil {
		t.Fatalf("NewTokenSet() error = %v", err)
	}
	if set.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", set.Len())
	}
	tests := []struct {
		name       string
		secret     string
		now        time.Time
		wantName   string
		wantUser   string
		wantScopes []string
		wantErr    error
	}{
		{name: "good", secret: ciSecret, now: testNow, wantName: "ci", wantScopes: []string{"operator.read"}},
		{name: "good by hash, user normalised, nil scopes", secret: opsSecret, now: testNow, wantName: "ops", wantUser: "ops@example.com"},
		{name: "wrong", secret: "ci-secret-0123456780", now: testNow, wantErr: ErrUnknownToken},
		{name: "prefix", secret: ciSecret[:10], now: testNow, wantErr: ErrUnknownToken},
		{name: "longer", secret: ciSecret + "x", now: testNow, wantErr: ErrUnknownToken},
		{name: "empty", secret: "", now: testNow, wantErr: ErrUnknownToken},
		{name: "expired at its instant", secret: oldSecret, now: testNow, wantErr: ErrTokenExpired},
		{name: "expired later", secret: oldSecret, now: testNow.Add(time.Hour), wantErr: ErrTokenExpired},
		{name: "not yet expired", secret: oldSecret, now: testNow.Add(-time.Nanosecond), wantName: "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := set.Lookup(tt.secret, tt.now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("Lookup() = %v, %v; want nil, %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup() error = %v", err)
			}
			if got.Name != tt.wantName || got.User != tt.wantUser || !slices.Equal(got.Scopes, tt.wantScopes) || (got.Scopes == nil) != (tt.wantScopes == nil) {
				t.Errorf("Lookup() = %+v, want name %q user %q scopes %#v", got, tt.wantName, tt.wantUser, tt.wantScopes)
			}
			if got.Fingerprint != Fingerprint(tt.secret) || len(got.Fingerprint) != 8 {
				t.Errorf("Lookup().Fingerprint = %q, want %q", got.Fingerprint, Fingerprint(tt.secret))
			}
		})
	}
	var nilSet *TokenSet
	if _, err := nilSet.Lookup(ciSecret, testNow); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("nil TokenSet Lookup() error = %v, want %v", err, ErrUnknownToken)
	}
}

func TestFingerprint(t *testing.T) {
	a, b := Fingerprint("secret-one-0123456"), Fingerprint("secret-two-0123456")
	if a == b || len(a) != 8 || strings.Contains("secret-one-0123456", a) {
		t.Errorf("Fingerprint() = %q, %q; want distinct 8-hex prefixes", a, b)
	}
	// Known SHA-256 vector: sha256("x") starts 2d711642.
	if got := Fingerprint("x"); got != "2d711642" {
		t.Errorf("Fingerprint(x) = %q, want %q", got, "2d711642")
	}
}

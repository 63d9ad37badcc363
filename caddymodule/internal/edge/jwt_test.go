package edge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testNow is the fixed clock of every JWT test.
var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// keyFixture holds keys minted once per test binary; RSA generation is slow.
type keyFixture struct {
	rsa, rsaOther *rsa.PrivateKey
	ec, ecOther   *ecdsa.PrivateKey
	ed, edOther   ed25519.PrivateKey
	hs, hsOther   []byte
}

var fixture = sync.OnceValue(func() *keyFixture {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	f := &keyFixture{}
	var err error
	f.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	f.rsaOther, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	f.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	f.ecOther, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, f.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	_, f.edOther, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	f.hs = make([]byte, 32)
	f.hsOther = make([]byte, 48)
	_, err = rand.Read(f.hs)
	must(err)
	_, err = rand.Read(f.hsOther)
	must(err)
	return f
})

// baseClaims returns valid claims at testNow.
func baseClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub":   "Alice@Example.com",
		"iss":   "https://idp.test",
		"aud":   "clawgate",
		"exp":   testNow.Add(time.Hour).Unix(),
		"iat":   testNow.Add(-time.Minute).Unix(),
		"scope": "operator.read operator.write",
	}
}

// sign mints a token; hdr entries are added to (or, when nil, removed from)
// the JOSE header.
func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims, hdr map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing %s token: %v", m.Alg(), err)
	}
	return s
}

// rawToken assembles a token from a literal header and claims with the
// given signature bytes, to express headers jwt refuses to sign.
func rawToken(t testing.TB, header string, claims jwt.MapClaims, sig []byte) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig)
}

// hsSign signs header.claims with HMAC-SHA256 under secret, for tokens with
// literal headers.
func hsSign(t testing.TB, header string, claims jwt.MapClaims, secret []byte) string {
	t.Helper()
	unsigned := rawToken(t, header, claims, []byte{0})
	signingInput := unsigned[:strings.LastIndexByte(unsigned, '.')]
	sig, err := jwt.SigningMethodHS256.Sign(signingInput, secret)
	if err != nil {
		t.Fatal(err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// pemPublic returns the PKIX PEM of a public key.
func pemPublic(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// allAlgsConfig allows every supported algorithm with the fixture's keys.
func allAlgsConfig() JWTConfig {
	f := fixture()
	return JWTConfig{
		Algorithms:  []string{"HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"},
		HMACSecrets: [][]byte{f.hs},
		PublicKeys:  []crypto.PublicKey{&f.rsa.PublicKey, &f.ec.PublicKey, f.ed.Public()},
		Issuer:      "https://idp.test",
		Audience:    []string{"clawgate", "other"},
		Leeway:      30 * time.Second,
	}
}

func newVerifier(t testing.TB, cfg JWTConfig) *JWTVerifier {
	t.Helper()
	v, err := NewJWTVerifier(cfg)
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	return v
}

// with returns baseClaims changed by set (nil values delete the claim).
func with(set map[string]any) jwt.MapClaims {
	c := baseClaims()
	for k, v := range set {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestVerifyJWT(t *testing.T) {
	f := fixture()
	rsaPEM := pemPublic(t, &f.rsa.PublicKey)
	rsOnly := allAlgsConfig()
	rsOnly.Algorithms = []string{"RS256"}
	hsAndRS := allAlgsConfig()
	hsAndRS.Algorithms = []string{"HS256", "RS256"}
	noLeeway := allAlgsConfig()
	noLeeway.Leeway = 0
	byKid := allAlgsConfig()
	byKid.PublicKeys = nil
	byKid.KeysByID = map[string]crypto.PublicKey{"ed-1": f.ed.Public(), "rsa-1": &f.rsa.PublicKey, "ec-1": &f.ec.PublicKey}
	byKid.Algorithms = []string{"RS256", "ES256", "EdDSA"}
	byKid.HMACSecrets = nil
	nested := allAlgsConfig()
	nested.UserClaim = "profile.email"
	nested.ScopeClaim = "scp"
	noIssAud := allAlgsConfig()
	noIssAud.Issuer, noIssAud.Audience = "", nil

	good := sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), nil)
	parts := strings.Split(good, ".")
	tampered := sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"sub": "mallory@example.com"}), nil)
	tamperedParts := strings.Split(tampered, ".")

	tests := []struct {
		name       string
		cfg        JWTConfig
		token      string
		now        time.Time
		wantErr    error
		wantUser   string
		wantScopes []string
	}{
		{name: "HS256", token: sign(t, jwt.SigningMethodHS256, f.hs, baseClaims(), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "HS384", token: sign(t, jwt.SigningMethodHS384, f.hs, baseClaims(), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "HS512", token: sign(t, jwt.SigningMethodHS512, f.hs, baseClaims(), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "RS256", token: sign(t, jwt.SigningMethodRS256, f.rsa, baseClaims(), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "ES256", token: sign(t, jwt.SigningMethodES256, f.ec, baseClaims(), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "EdDSA", token: good, wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},

		{name: "HS256 other secret", token: sign(t, jwt.SigningMethodHS256, f.hsOther, baseClaims(), nil), wantErr: ErrJWTInvalid},
		{name: "RS256 other key", token: sign(t, jwt.SigningMethodRS256, f.rsaOther, baseClaims(), nil), wantErr: ErrJWTInvalid},
		{name: "ES256 other key", token: sign(t, jwt.SigningMethodES256, f.ecOther, baseClaims(), nil), wantErr: ErrJWTInvalid},
		{name: "EdDSA other key", token: sign(t, jwt.SigningMethodEdDSA, f.edOther, baseClaims(), nil), wantErr: ErrJWTInvalid},
		{name: "payload swapped under a valid signature", token: parts[0] + "." + tamperedParts[1] + "." + parts[2], wantErr: ErrJWTInvalid},
		{name: "signature with extra trailing bits", token: parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + flipLastB64(parts[2]), wantErr: ErrJWTInvalid},

		{name: "alg none", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, baseClaims(), nil) + "AA", wantErr: ErrJWTAlgorithm},
		{name: "alg none empty signature", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, baseClaims(), nil), wantErr: ErrJWTMalformed},
		{name: "alg None", token: rawToken(t, `{"alg":"None","typ":"JWT"}`, baseClaims(), []byte("x")), wantErr: ErrJWTAlgorithm},
		{name: "alg NONE", token: rawToken(t, `{"alg":"NONE","typ":"JWT"}`, baseClaims(), []byte("x")), wantErr: ErrJWTAlgorithm},
		{name: "alg missing", token: rawToken(t, `{"typ":"JWT"}`, baseClaims(), []byte("x")), wantErr: ErrJWTAlgorithm},
		{name: "alg not a string", token: rawToken(t, `{"alg":["HS256"]}`, baseClaims(), []byte("x")), wantErr: ErrJWTAlgorithm},
		{name: "alg hs256 lowercase", token: rawToken(t, `{"alg":"hs256"}`, baseClaims(), []byte("x")), wantErr: ErrJWTAlgorithm},
		{name: "duplicate alg key, last one none", token: hsSign(t, `{"alg":"HS256","alg":"none"}`, baseClaims(), f.hs), wantErr: ErrJWTAlgorithm},
		{name: "alg RS384 not supported", token: sign(t, jwt.SigningMethodRS384, f.rsa, baseClaims(), nil), wantErr: ErrJWTAlgorithm},
		{name: "alg HS256 not in allowlist", cfg: rsOnly, token: sign(t, jwt.SigningMethodHS256, f.hs, baseClaims(), nil), wantErr: ErrJWTAlgorithm},
		{name: "alg PS256 not supported", token: sign(t, jwt.SigningMethodPS256, f.rsa, baseClaims(), nil), wantErr: ErrJWTAlgorithm},

		{name: "HS256 signed with RSA public key PEM, RS256 only", cfg: rsOnly, token: sign(t, jwt.SigningMethodHS256, rsaPEM, baseClaims(), nil), wantErr: ErrJWTAlgorithm},
		{name: "HS256 signed with RSA public key PEM, HS256 and RS256 allowed", cfg: hsAndRS, token: sign(t, jwt.SigningMethodHS256, rsaPEM, baseClaims(), nil), wantErr: ErrJWTInvalid},
		{name: "RS256 header over an HMAC signature", cfg: hsAndRS, token: rsHeaderHMAC(t, f.hs), wantErr: ErrJWTInvalid},

		{name: "jku header", token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"jku": "https://evil.test/jwks"}), wantErr: ErrJWTHeader},
		{name: "x5u header", token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"x5u": "https://evil.test/cert"}), wantErr: ErrJWTHeader},
		{name: "x5c header", token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"x5c": []string{"MIIB"}}), wantErr: ErrJWTHeader},
		{name: "jwk header", token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"jwk": map[string]string{"kty": "OKP"}}), wantErr: ErrJWTHeader},
		{name: "crit header", token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"crit": []string{"exp"}}), wantErr: ErrJWTHeader},
		{name: "jku null still refused", token: rawToken(t, `{"alg":"EdDSA","jku":null}`, baseClaims(), []byte("x")), wantErr: ErrJWTHeader},

		{name: "known kid", cfg: byKid, token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"kid": "ed-1"}), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "no kid tries every key", cfg: byKid, token: sign(t, jwt.SigningMethodRS256, f.rsa, baseClaims(), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "unknown kid", cfg: byKid, token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"kid": "ed-2"}), wantErr: ErrJWTHeader},
		{name: "path kid", cfg: byKid, token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"kid": "../../../../etc/passwd"}), wantErr: ErrJWTHeader},
		{name: "kid of a key from another family", cfg: byKid, token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"kid": "rsa-1"}), wantErr: ErrJWTHeader},
		{name: "kid selects a key that did not sign", cfg: byKid, token: sign(t, jwt.SigningMethodES256, f.ecOther, baseClaims(), map[string]any{"kid": "ec-1"}), wantErr: ErrJWTInvalid},
		{name: "empty kid", cfg: byKid, token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"kid": ""}), wantErr: ErrJWTHeader},
		{name: "numeric kid", cfg: byKid, token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"kid": 1}), wantErr: ErrJWTHeader},

		{name: "empty", token: "", wantErr: ErrJWTMalformed},
		{name: "one dot", token: "a.b", wantErr: ErrJWTMalformed},
		{name: "three dots", token: good + ".x", wantErr: ErrJWTMalformed},
		{name: "empty segment", token: parts[0] + ".." + parts[2], wantErr: ErrJWTMalformed},
		{name: "padding", token: good + "=", wantErr: ErrJWTMalformed},
		{name: "header not json", token: "bm90anNvbg." + parts[1] + "." + parts[2], wantErr: ErrJWTMalformed},
		{name: "header json array", token: base64.RawURLEncoding.EncodeToString([]byte(`["alg"]`)) + "." + parts[1] + "." + parts[2], wantErr: ErrJWTMalformed},
		{name: "header json null", token: base64.RawURLEncoding.EncodeToString([]byte(`null`)) + "." + parts[1] + "." + parts[2], wantErr: ErrJWTMalformed},
		{name: "4096 dots", token: strings.Repeat(".", 4096), wantErr: ErrJWTMalformed},
		{name: "100k dots", token: strings.Repeat(".", 100000), wantErr: ErrJWTTooLong},
		{name: "too long", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"pad": strings.Repeat("x", 5000)}), nil), wantErr: ErrJWTTooLong},

		{name: "expired", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"exp": testNow.Add(-time.Hour).Unix()}), nil), wantErr: ErrJWTInvalid},
		{name: "expired with bad signature", token: sign(t, jwt.SigningMethodEdDSA, f.edOther, with(map[string]any{"exp": testNow.Add(-time.Hour).Unix()}), nil), wantErr: ErrJWTInvalid},
		{name: "exp missing", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"exp": nil}), nil), wantErr: ErrJWTInvalid},
		{name: "exp a string", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"exp": "tomorrow"}), nil), wantErr: ErrJWTInvalid},
		{name: "exp within leeway", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"exp": testNow.Add(-29 * time.Second).Unix()}), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "exp just past leeway", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"exp": testNow.Add(-31 * time.Second).Unix()}), nil), wantErr: ErrJWTInvalid},
		{name: "exp exactly at now without leeway", cfg: noLeeway, token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"exp": testNow.Unix()}), nil), wantErr: ErrJWTInvalid},
		{name: "exp one second ahead without leeway", cfg: noLeeway, token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"exp": testNow.Add(time.Second).Unix()}), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "nbf future", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"nbf": testNow.Add(time.Hour).Unix()}), nil), wantErr: ErrJWTInvalid},
		{name: "nbf within leeway", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"nbf": testNow.Add(29 * time.Second).Unix()}), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "nbf just past leeway", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"nbf": testNow.Add(31 * time.Second).Unix()}), nil), wantErr: ErrJWTInvalid},
		{name: "iat future", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"iat": testNow.Add(time.Hour).Unix()}), nil), wantErr: ErrJWTInvalid},
		{name: "iat within leeway", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"iat": testNow.Add(29 * time.Second).Unix()}), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "iat just past leeway", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"iat": testNow.Add(31 * time.Second).Unix()}), nil), wantErr: ErrJWTInvalid},
		{name: "wrong iss", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"iss": "https://evil.test"}), nil), wantErr: ErrJWTInvalid},
		{name: "iss missing", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"iss": nil}), nil), wantErr: ErrJWTInvalid},
		{name: "iss and aud not configured", cfg: noIssAud, token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"iss": "anything", "aud": nil}), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "wrong aud", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"aud": "someone-else"}), nil), wantErr: ErrJWTInvalid},
		{name: "aud missing", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"aud": nil}), nil), wantErr: ErrJWTInvalid},
		{name: "aud array containing one", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"aud": []string{"x", "other"}}), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.write"}},
		{name: "aud array without one", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"aud": []string{"x", "y"}}), nil), wantErr: ErrJWTInvalid},

		{name: "user claim a number", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"sub": 42}), nil), wantErr: ErrJWTInvalid},
		{name: "user claim empty", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"sub": "  "}), nil), wantErr: ErrJWTInvalid},
		{name: "user claim missing", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"sub": nil}), nil), wantErr: ErrJWTInvalid},
		{name: "user claim an object", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"sub": map[string]any{"a": "b"}}), nil), wantErr: ErrJWTInvalid},
		{name: "scope claim array", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"scope": []string{"operator.read", "operator.approvals"}}), nil), wantUser: "Alice@Example.com", wantScopes: []string{"operator.read", "operator.approvals"}},
		{name: "scope claim empty string", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"scope": ""}), nil), wantUser: "Alice@Example.com", wantScopes: []string{}},
		{name: "scope claim absent", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"scope": nil}), nil), wantUser: "Alice@Example.com", wantScopes: nil},
		{name: "scope claim a number", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"scope": 7}), nil), wantErr: ErrJWTInvalid},
		{name: "scope claim array with a number", token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"scope": []any{"operator.read", 7}}), nil), wantErr: ErrJWTInvalid},
		{name: "nested user claim and scp", cfg: nested, token: sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"profile": map[string]any{"email": "bob@example.com"}, "scp": []string{"operator.read"}}), nil), wantUser: "bob@example.com", wantScopes: []string{"operator.read"}},
		{name: "nested user claim missing", cfg: nested, token: sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), nil), wantErr: ErrJWTInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Algorithms == nil {
				cfg = allAlgsConfig()
			}
			now := tt.now
			if now.IsZero() {
				now = testNow
			}
			v := newVerifier(t, cfg)
			got, err := v.Verify(tt.token, now)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify() = %+v, %v; want error %v", got, err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("Verify() returned claims with error %v", err)
				}
				if strings.Contains(err.Error(), tt.token) && len(tt.token) > 8 {
					t.Errorf("Verify() error %q contains the token", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify() error = %v, want nil", err)
			}
			if got.User != tt.wantUser {
				t.Errorf("Verify().User = %q, want %q", got.User, tt.wantUser)
			}
			if (got.Scopes == nil) != (tt.wantScopes == nil) || !slices.Equal(got.Scopes, tt.wantScopes) {
				t.Errorf("Verify().Scopes = %#v, want %#v", got.Scopes, tt.wantScopes)
			}
			if got.Fingerprint != Fingerprint(tt.token) {
				t.Errorf("Verify().Fingerprint = %q, want %q", got.Fingerprint, Fingerprint(tt.token))
			}
			hdr, _ := base64.RawURLEncoding.DecodeString(tt.token[:strings.IndexByte(tt.token, '.')])
			var h struct{ Alg string }
			_ = json.Unmarshal(hdr, &h)
			if got.Alg != h.Alg {
				t.Errorf("Verify().Alg = %q, want %q", got.Alg, h.Alg)
			}
		})
	}
}

// flipLastB64 returns a different base64url character that decodes to the
// same bytes when the last character carries unused low bits, to probe
// non-canonical encodings.
func flipLastB64(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return string(alphabet[i^1])
}

// rsHeaderHMAC claims RS256 but carries an HS256 signature under secret.
func rsHeaderHMAC(t testing.TB, secret []byte) string {
	return hsSign(t, `{"alg":"RS256","typ":"JWT"}`, baseClaims(), secret)
}

func TestVerifyJWTManyDotsNoAllocation(t *testing.T) {
	cfg := allAlgsConfig()
	cfg.MaxLength = 1 << 20
	v := newVerifier(t, cfg)
	tok := strings.Repeat(".", 100000)
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := v.Verify(tok, testNow); !errors.Is(err, ErrJWTMalformed) {
			t.Fatalf("Verify(100k dots) error = %v, want %v", err, ErrJWTMalformed)
		}
	})
	// Splitting would allocate a 100k-element slice; the error value itself
	// is the only allocation expected.
	if allocs > 3 {
		t.Errorf("Verify(100k dots) allocated %v times, want <= 3", allocs)
	}
}

func TestVerifyJWTCache(t *testing.T) {
	f := fixture()
	cfg := allAlgsConfig()
	cfg.Leeway = 0
	v := newVerifier(t, cfg)
	tok := sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), nil)

	first, err := v.Verify(tok, testNow)
	if err != nil {
		t.Fatalf("Verify() error = %v", err)
	}
	second, err := v.Verify(tok, testNow.Add(time.Minute))
	if err != nil {
		t.Fatalf("Verify() again error = %v", err)
	}
	if first != second {
		t.Errorf("second Verify() did not come from the cache")
	}
	if _, err := v.Verify(tok, testNow.Add(time.Hour)); !errors.Is(err, ErrJWTInvalid) {
		t.Errorf("Verify() at exp from cache = %v, want %v", err, ErrJWTInvalid)
	}
	if _, err := v.Verify(tok, testNow.Add(2*time.Hour)); !errors.Is(err, ErrJWTInvalid) {
		t.Errorf("Verify() after exp = %v, want %v", err, ErrJWTInvalid)
	}

	// A token verified after its nbf must not be served to an earlier clock.
	nbfTok := sign(t, jwt.SigningMethodEdDSA, f.ed, with(map[string]any{"nbf": testNow.Add(10 * time.Minute).Unix()}), nil)
	if _, err := v.Verify(nbfTok, testNow.Add(20*time.Minute)); err != nil {
		t.Fatalf("Verify(nbf token) after nbf error = %v", err)
	}
	if _, err := v.Verify(nbfTok, testNow); !errors.Is(err, ErrJWTInvalid) {
		t.Errorf("Verify(nbf token) before nbf = %v, want %v", err, ErrJWTInvalid)
	}

	// A rejected token is not cached.
	bad := sign(t, jwt.SigningMethodEdDSA, f.edOther, baseClaims(), nil)
	for range 2 {
		if _, err := v.Verify(bad, testNow); !errors.Is(err, ErrJWTInvalid) {
			t.Errorf("Verify(bad) = %v, want %v", err, ErrJWTInvalid)
		}
	}
}

func TestJWTCacheBounded(t *testing.T) {
	c := newJWTCache(defaultJWTCacheSize)
	claims := &Claims{User: "u", Expires: testNow.Add(time.Hour)}
	for i := range 30000 {
		c.put(cacheKey(strings.Repeat("x", i%7)+string(rune(i))+big.NewInt(int64(i)).String()), claims, time.Time{}, testNow)
	}
	if got := c.len(); got > defaultJWTCacheSize || got < defaultJWTCacheSize/2 {
		t.Errorf("cache len after 30000 puts = %d, want in (%d, %d]", got, defaultJWTCacheSize/2, defaultJWTCacheSize)
	}
	// Expired entries give way first.
	c2 := newJWTCache(jwtCacheShards)
	old := &Claims{Expires: testNow.Add(time.Second)}
	for i := range 100 {
		c2.put(cacheKey(big.NewInt(int64(i)).String()), old, time.Time{}, testNow)
	}
	fresh := &Claims{Expires: testNow.Add(time.Hour)}
	later := testNow.Add(time.Minute)
	k := cacheKey("fresh")
	c2.put(k, fresh, time.Time{}, later)
	if got := c2.get(k, later); got != fresh {
		t.Errorf("fresh entry not cached")
	}
	if got := c2.len(); got > jwtCacheShards {
		t.Errorf("cache len = %d, want <= %d", got, jwtCacheShards)
	}
	if c2.get(cacheKey("0"), later) != nil {
		t.Errorf("expired entry served")
	}
}

func TestNewJWTVerifierErrors(t *testing.T) {
	f := fixture()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     JWTConfig
		wantErr string
	}{
		{"no algorithms", JWTConfig{HMACSecrets: [][]byte{f.hs}}, "at least one algorithm"},
		{"alg none", JWTConfig{Algorithms: []string{"none"}}, `unsupported algorithm "none"`},
		{"alg RS384", JWTConfig{Algorithms: []string{"RS384"}, PublicKeys: []crypto.PublicKey{&f.rsa.PublicKey}}, `unsupported algorithm "RS384"`},
		{"HS256 without secrets", JWTConfig{Algorithms: []string{"HS256"}}, "needs hmac secrets"},
		{"short secret", JWTConfig{Algorithms: []string{"HS256"}, HMACSecrets: [][]byte{make([]byte, 31)}}, "hmac secret shorter than 32 bytes"},
		{"RS256 without rsa key", JWTConfig{Algorithms: []string{"RS256"}, PublicKeys: []crypto.PublicKey{f.ed.Public()}}, "needs a rsa public key"},
		{"ES256 without ec key", JWTConfig{Algorithms: []string{"ES256"}, HMACSecrets: [][]byte{f.hs}}, "needs a ecdsa p-256 public key"},
		{"EdDSA without key", JWTConfig{Algorithms: []string{"EdDSA"}, PublicKeys: []crypto.PublicKey{&f.ec.PublicKey}}, "needs a ed25519 public key"},
		{"rsa 1024", JWTConfig{Algorithms: []string{"RS256"}, PublicKeys: []crypto.PublicKey{&small.PublicKey}}, "need at least 2048"},
		{"ec p-384", JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{&p384.PublicKey}}, "p-256"},
		{"hmac as public key", JWTConfig{Algorithms: []string{"HS256"}, HMACSecrets: [][]byte{f.hs}, PublicKeys: []crypto.PublicKey{f.hs}}, "hmac secrets belong"},
		{"private key as public key", JWTConfig{Algorithms: []string{"RS256"}, PublicKeys: []crypto.PublicKey{f.rsa}}, "unsupported key type"},
		{"kid of a weak key", JWTConfig{Algorithms: []string{"RS256"}, KeysByID: map[string]crypto.PublicKey{"a": &small.PublicKey}}, `key "a"`},
		{"negative leeway", JWTConfig{Algorithms: []string{"HS256"}, HMACSecrets: [][]byte{f.hs}, Leeway: -time.Second}, "leeway"},
		{"empty audience", JWTConfig{Algorithms: []string{"HS256"}, HMACSecrets: [][]byte{f.hs}, Audience: []string{""}}, "audience[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewJWTVerifier(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewJWTVerifier() error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a.b.c", true},
		{"eyJh-_.eyJ0.c2ln", true},
		{"", false},
		{"a.b", false},
		{"a.b.c.d", false},
		{".b.c", false},
		{"a..c", false},
		{"a.b.", false},
		{"a.b.c=", false},
		{"a.b.c d", false},
		{"a+b.c.d", false},
		{"a/b.c.d", false},
		{"..", false},
		{strings.Repeat(".", 1000), false},
	}
	for _, tt := range tests {
		if got := LooksLikeJWT(tt.in); got != tt.want {
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParsePublicKeysPEM(t *testing.T) {
	f := fixture()
	certTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "idp.test"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	certDER, err := x509.CreateCertificate(rand.Reader, certTmpl, certTmpl, &f.ec.PublicKey, f.ec)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&f.rsa.PublicKey)})
	privDER, err := x509.MarshalPKCS8PrivateKey(f.ed)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})

	var all []byte
	all = append(all, pemPublic(t, &f.rsa.PublicKey)...)
	all = append(all, pemPublic(t, &f.ec.PublicKey)...)
	all = append(all, pemPublic(t, f.ed.Public())...)
	all = append(all, pkcs1...)
	all = append(all, certPEM...)

	keys, err := ParsePublicKeysPEM(all)
	if err != nil {
		t.Fatalf("ParsePublicKeysPEM() error = %v", err)
	}
	want := []crypto.PublicKey{&f.rsa.PublicKey, &f.ec.PublicKey, f.ed.Public(), &f.rsa.PublicKey, &f.ec.PublicKey}
	if len(keys) != len(want) {
		t.Fatalf("ParsePublicKeysPEM() returned %d keys, want %d", len(keys), len(want))
	}
	for i := range want {
		eq, ok := keys[i].(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !eq.Equal(want[i]) {
			t.Errorf("key %d = %T, want %T equal to the minted key", i, keys[i], want[i])
		}
	}
	// The parsed keys verify real tokens.
	v := newVerifier(t, JWTConfig{Algorithms: []string{"RS256", "ES256", "EdDSA"}, PublicKeys: keys})
	for _, tok := range []string{
		sign(t, jwt.SigningMethodRS256, f.rsa, baseClaims(), nil),
		sign(t, jwt.SigningMethodES256, f.ec, baseClaims(), nil),
		sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), nil),
	} {
		if _, err := v.Verify(tok, testNow); err != nil {
			t.Errorf("Verify() with PEM keys error = %v", err)
		}
	}

	bad := []struct {
		name, data, wantErr string
	}{
		{"empty", "", "no pem public key"},
		{"garbage", "hello", "no pem public key"},
		{"private key", string(privPEM), `unsupported type "PRIVATE KEY"`},
		{"public then private", string(pemPublic(t, f.ed.Public())) + string(privPEM), "PRIVATE KEY"},
		{"corrupt body", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "pem block 0"},
		{"trailing data", string(pemPublic(t, f.ed.Public())) + "junk", "trailing data"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePublicKeysPEM([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePublicKeysPEM() error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

// jwkJSON renders public keys (and one oct secret) as a JWK set.
func jwkJSON(t testing.TB, f *keyFixture, extra ...map[string]any) []byte {
	t.Helper()
	b := base64.RawURLEncoding.EncodeToString
	ecPoint, err := f.ec.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	keys := []map[string]any{
		{"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b(f.rsa.N.Bytes()), "e": b(big.NewInt(int64(f.rsa.E)).Bytes())},
		{"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b(ecPoint[1:33]), "y": b(ecPoint[33:])},
		{"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b(f.ed.Public().(ed25519.PublicKey))},
		{"kty": "oct", "k": b(f.hs)},
	}
	for _, e := range extra {
		keys = append(keys, e)
	}
	out, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseJWKS(t *testing.T) {
	f := fixture()
	byID, secrets, err := ParseJWKS(jwkJSON(t, f))
	if err != nil {
		t.Fatalf("ParseJWKS() error = %v", err)
	}
	if len(byID) != 3 || len(secrets) != 1 || string(secrets[0]) != string(f.hs) {
		t.Fatalf("ParseJWKS() = %d keys, %d secrets; want 3 and the minted secret", len(byID), len(secrets))
	}
	v := newVerifier(t, JWTConfig{Algorithms: []string{"RS256", "ES256", "EdDSA", "HS256"}, KeysByID: byID, HMACSecrets: secrets})
	for _, tok := range []string{
		sign(t, jwt.SigningMethodRS256, f.rsa, baseClaims(), map[string]any{"kid": "rsa-1"}),
		sign(t, jwt.SigningMethodES256, f.ec, baseClaims(), map[string]any{"kid": "ec-1"}),
		sign(t, jwt.SigningMethodEdDSA, f.ed, baseClaims(), map[string]any{"kid": "ed-1"}),
		sign(t, jwt.SigningMethodHS256, f.hs, baseClaims(), nil),
	} {
		if _, err := v.Verify(tok, testNow); err != nil {
			t.Errorf("Verify() with JWKS keys error = %v", err)
		}
	}

	b := base64.RawURLEncoding.EncodeToString
	bad := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"not json", []byte("{"), "parsing jwks"},
		{"no keys", []byte(`{}`), `no "keys"`},
		{"private d", jwkJSON(t, f, map[string]any{"kty": "OKP", "kid": "p", "crv": "Ed25519", "x": b(f.ed.Public().(ed25519.PublicKey)), "d": b(f.ed.Seed())}), "private key material"},
		{"private rsa p", jwkJSON(t, f, map[string]any{"kty": "RSA", "kid": "p", "n": "AQAB", "e": "AQAB", "p": "AQAB"}), "private key material"},
		{"oct with d", jwkJSON(t, f, map[string]any{"kty": "oct", "k": "AAAA", "d": "AAAA"}), "private key material"},
		{"unknown kty", jwkJSON(t, f, map[string]any{"kty": "XYZ", "kid": "x"}), `unsupported kty "XYZ"`},
		{"p-384", jwkJSON(t, f, map[string]any{"kty": "EC", "kid": "x", "crv": "P-384", "x": "AA", "y": "AA"}), `unsupported ec curve "P-384"`},
		{"point off curve", jwkJSON(t, f, map[string]any{"kty": "EC", "kid": "x", "crv": "P-256", "x": b(make([]byte, 32)), "y": b(append(make([]byte, 31), 1))}), "invalid ec point"},
		{"missing kid", jwkJSON(t, f, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b(f.edOther.Public().(ed25519.PublicKey))}), "missing kid"},
		{"duplicate kid", jwkJSON(t, f, map[string]any{"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b(f.edOther.Public().(ed25519.PublicKey))}), `duplicate kid "ed-1"`},
		{"use enc", jwkJSON(t, f, map[string]any{"kty": "OKP", "kid": "e", "use": "enc", "crv": "Ed25519", "x": b(f.edOther.Public().(ed25519.PublicKey))}), `use "enc"`},
		{"short ed25519", jwkJSON(t, f, map[string]any{"kty": "OKP", "kid": "e", "crv": "Ed25519", "x": "AAAA"}), "invalid ed25519"},
		{"even rsa exponent", jwkJSON(t, f, map[string]any{"kty": "RSA", "kid": "r", "n": b(f.rsaOther.N.Bytes()), "e": "Ag"}), "invalid rsa exponent"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseJWKS(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseJWKS() error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

package edge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults for JWTConfig fields left zero.
const (
	defaultUserClaim    = "sub"
	defaultScopeClaim   = "scope"
	defaultJWTMaxLength = 4096
	minHMACSecretLen    = 32
	minRSABits          = 2048
)

// Errors returned by JWTVerifier.Verify, wrapped with detail. The detail
// never contains the token.
var (
	// ErrJWTMalformed means the token failed the cheap structural checks.
	ErrJWTMalformed = errors.New("malformed jwt")
	// ErrJWTTooLong means the token exceeds the configured MaxLength.
	ErrJWTTooLong = errors.New("jwt too long")
	// ErrJWTAlgorithm means the header's alg is not in the allowlist.
	ErrJWTAlgorithm = errors.New("jwt algorithm not allowed")
	// ErrJWTHeader means the header carries a member the guard refuses
	// (jku, x5u, x5c, jwk, crit) or a kid that names no configured key.
	ErrJWTHeader = errors.New("jwt header refused")
	// ErrJWTInvalid means the signature or the claims did not verify.
	ErrJWTInvalid = errors.New("invalid jwt")
)

// algFamily groups JWT algorithms by the key type that may verify them.
type algFamily int

const (
	familyHMAC algFamily = iota + 1
	familyRSA
	familyECDSA
	familyEdDSA
)

// supportedAlgs are the algorithms a JWTConfig may allow. "none" is not one
// of them, in any spelling.
var supportedAlgs = map[string]algFamily{
	"HS256": familyHMAC,
	"HS384": familyHMAC,
	"HS512": familyHMAC,
	"RS256": familyRSA,
	"ES256": familyECDSA,
	"EdDSA": familyEdDSA,
}

// refusedHeaders name keys or key locations chosen by the token itself, or
// extensions the guard does not implement; trusting any of them would let
// the token pick the key that verifies it.
var refusedHeaders = [...]string{"jku", "x5u", "x5c", "jwk", "crit"}

// JWTConfig configures a JWTVerifier. Keys are given, never fetched.
type JWTConfig struct {
	// Algorithms is the allowlist of signature algorithms; required and
	// non-empty. Allowed values: HS256 HS384 HS512 RS256 ES256 EdDSA.
	Algorithms []string
	// HMACSecrets verify HS* tokens; each must be at least 32 bytes.
	HMACSecrets [][]byte
	// PublicKeys verify RS256 (*rsa.PublicKey, at least 2048 bits), ES256
	// (*ecdsa.PublicKey on P-256) and EdDSA (ed25519.PublicKey) tokens.
	PublicKeys []crypto.PublicKey
	// KeysByID holds keys from a JWK set by kid. When it is non-empty, a
	// token's kid must name one of them; a kid never causes a fetch or a file
	// read. Tokens without a kid are tried against every key of the right
	// type in PublicKeys and KeysByID.
	KeysByID map[string]crypto.PublicKey
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must contain one of the token's aud values.
	Audience []string
	// Leeway is the clock skew tolerated for exp, nbf and iat; default 0.
	Leeway time.Duration
	// UserClaim names the claim holding the user identity; default "sub".
	// A dot path reaches into nested objects.
	UserClaim string
	// ScopeClaim names the claim holding scopes, as a space-separated
	// string or an array of strings; default "scope".
	ScopeClaim string
	// MaxLength is the longest token accepted, in bytes; default 4096.
	// Longer tokens are rejected before any decoding.
	MaxLength int
	// CacheSize bounds how many verified tokens are remembered so that a
	// repeated token skips signature verification; default 10240, negative
	// disables the cache.
	CacheSize int
}

// Claims is what a verified JWT contributes to an Identity. Claims returned
// by Verify may be shared through the cache and must not be modified.
type Claims struct {
	// User is the user claim's value, non-empty.
	User string
	// Scopes is the scope claim split into names; nil if the claim is absent.
	Scopes []string
	// ScopeClaim is the name of the claim Scopes came from, so that rules on
	// that claim can match one scope out of a space-separated list.
	ScopeClaim string
	// Expires is the token's exp.
	Expires time.Time
	// Raw holds every claim; numbers are json.Number.
	Raw map[string]any
	// Fingerprint is a short hash of the token, safe to log.
	Fingerprint string
	// Alg is the algorithm the token was verified with.
	Alg string
}

// JWTVerifier verifies bearer JWTs against a fixed configuration. It is
// safe for concurrent use.
type JWTVerifier struct {
	cfg      JWTConfig
	allowed  map[string]algFamily
	byFamily map[algFamily]jwt.VerificationKeySet
	byID     map[string]idKey
	cache    *jwtCache
}

// idKey is a key from KeysByID with the algorithm family it verifies.
type idKey struct {
	fam algFamily
	key any
}

// NewJWTVerifier validates cfg and builds a verifier. It rejects unknown
// algorithms, HS* algorithms without secrets, RS256/ES256/EdDSA without a key
// of the matching type, HMAC secrets shorter than 32 bytes, RSA keys shorter
// than 2048 bits, EC keys not on P-256 and key types it does not know.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("jwt: algorithms: at least one algorithm is required")
	}
	if cfg.MaxLength < 0 {
		return nil, errors.New("jwt: max_length must not be negative")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("jwt: leeway must not be negative")
	}
	if cfg.MaxLength == 0 {
		cfg.MaxLength = defaultJWTMaxLength
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = defaultUserClaim
	}
	if cfg.ScopeClaim == "" {
		cfg.ScopeClaim = defaultScopeClaim
	}
	for i, a := range cfg.Audience {
		if a == "" {
			return nil, fmt.Errorf("jwt: audience[%d] is empty", i)
		}
	}

	v := &JWTVerifier{
		cfg:      cfg,
		allowed:  make(map[string]algFamily, len(cfg.Algorithms)),
		byFamily: make(map[algFamily]jwt.VerificationKeySet),
		byID:     make(map[string]idKey, len(cfg.KeysByID)),
	}
	switch {
	case cfg.CacheSize == 0:
		v.cache = newJWTCache(defaultJWTCacheSize)
	case cfg.CacheSize > 0:
		v.cache = newJWTCache(cfg.CacheSize)
	}
	for _, a := range cfg.Algorithms {
		fam, ok := supportedAlgs[a]
		if !ok {
			return nil, fmt.Errorf("jwt: algorithms: unsupported algorithm %q (allowed: HS256 HS384 HS512 RS256 ES256 EdDSA)", a)
		}
		v.allowed[a] = fam
	}
	for i, s := range cfg.HMACSecrets {
		if len(s) < minHMACSecretLen {
			return nil, fmt.Errorf("jwt: hmac_secrets[%d]: hmac secret shorter than %d bytes", i, minHMACSecretLen)
		}
		ks := v.byFamily[familyHMAC]
		ks.Keys = append(ks.Keys, append([]byte(nil), s...))
		v.byFamily[familyHMAC] = ks
	}
	for i, k := range cfg.PublicKeys {
		fam, key, err := checkPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("jwt: public_keys[%d]: %w", i, err)
		}
		ks := v.byFamily[fam]
		ks.Keys = append(ks.Keys, key)
		v.byFamily[fam] = ks
	}
	for kid, k := range cfg.KeysByID {
		if kid == "" {
			return nil, errors.New("jwt: keys by id: empty kid")
		}
		fam, key, err := checkPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("jwt: key %q: %w", kid, err)
		}
		v.byID[kid] = idKey{fam: fam, key: key}
		ks := v.byFamily[fam]
		ks.Keys = append(ks.Keys, key)
		v.byFamily[fam] = ks
	}
	for _, a := range cfg.Algorithms {
		fam := supportedAlgs[a]
		if len(v.byFamily[fam].Keys) == 0 {
			if fam == familyHMAC {
				return nil, fmt.Errorf("jwt: algorithm %s needs hmac secrets", a)
			}
			return nil, fmt.Errorf("jwt: algorithm %s needs a %s public key", a, familyName(fam))
		}
	}
	return v, nil
}

// familyName names the key type of an algorithm family for error messages.
func familyName(f algFamily) string {
	switch f {
	case familyHMAC:
		return "hmac"
	case familyRSA:
		return "rsa"
	case familyECDSA:
		return "ecdsa p-256"
	case familyEdDSA:
		return "ed25519"
	}
	return "unknown"
}

// checkPublicKey returns the algorithm family a key verifies and the key in
// the form the jwt library expects, or an error for weak or unknown keys.
func checkPublicKey(k crypto.PublicKey) (algFamily, any, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return 0, nil, errors.New("nil rsa key")
		}
		if k.N.BitLen() < minRSABits {
			return 0, nil, fmt.Errorf("rsa key has %d bits, need at least %d", k.N.BitLen(), minRSABits)
		}
		return familyRSA, k, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return 0, nil, errors.New("ecdsa key must be on curve p-256")
		}
		return familyECDSA, k, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return 0, nil, fmt.Errorf("ed25519 key has %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return familyEdDSA, k, nil
	case *ed25519.PublicKey:
		if k == nil || len(*k) != ed25519.PublicKeySize {
			return 0, nil, errors.New("invalid ed25519 key")
		}
		return familyEdDSA, *k, nil
	case []byte:
		return 0, nil, errors.New("hmac secrets belong in hmac_secrets, not public keys")
	}
	return 0, nil, fmt.Errorf("unsupported key type %T", k)
}

// Verify checks token and returns its claims. Cheap structural checks run
// before any decoding or cryptography: length, exactly two dots, base64url
// segments, a JSON header with an allowed alg and no refused members. The
// signature is then verified with keys of the alg's family only, and exp
// (required), nbf, iat, iss and aud are validated at now with the
// configured leeway. A token verified before is answered from a bounded
// cache until its exp.
func (v *JWTVerifier) Verify(token string, now time.Time) (*Claims, error) {
	if len(token) > v.cfg.MaxLength {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrJWTTooLong, len(token), v.cfg.MaxLength)
	}
	return v.VerifyDigest(token, DigestOf(token), now)
}

// Cached returns the claims of the token with this digest if it was verified
// before and is still valid at now, without looking at the token: the
// allow path of a token seen before. Nil means "verify it".
func (v *JWTVerifier) Cached(digest Digest, now time.Time) *Claims {
	if v.cache == nil {
		return nil
	}
	return v.cache.get([32]byte(digest), now)
}

// VerifyDigest is Verify for a token already hashed with DigestOf: the
// request's one hash serves the cache. Only verified tokens are cached, so a
// hit needs no further check.
func (v *JWTVerifier) VerifyDigest(token string, digest Digest, now time.Time) (*Claims, error) {
	if len(token) > v.cfg.MaxLength {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrJWTTooLong, len(token), v.cfg.MaxLength)
	}
	key := [32]byte(digest)
	if v.cache != nil {
		if c := v.cache.get(key, now); c != nil {
			return c, nil
		}
	}
	if !LooksLikeJWT(token) {
		return nil, fmt.Errorf("%w: not three base64url segments", ErrJWTMalformed)
	}

	headerSeg := token[:strings.IndexByte(token, '.')]
	alg, kid, err := v.checkHeader(headerSeg)
	if err != nil {
		return nil, err
	}
	fam := v.allowed[alg]
	var keys any
	if kid != "" && len(v.byID) > 0 {
		k, ok := v.byID[kid]
		if !ok {
			return nil, fmt.Errorf("%w: unknown kid", ErrJWTHeader)
		}
		if k.fam != fam {
			return nil, fmt.Errorf("%w: kid names a key that cannot verify %s", ErrJWTHeader, alg)
		}
		keys = k.key
	} else {
		keys = v.byFamily[fam]
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithJSONNumber(),
		jwt.WithStrictDecoding(),
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if len(v.cfg.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience...))
	}
	mc := jwt.MapClaims{}
	if _, err := jwt.NewParser(opts...).ParseWithClaims(token, mc, func(*jwt.Token) (any, error) {
		return keys, nil
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJWTInvalid, err)
	}

	c, err := v.claims(mc, token, alg)
	if err != nil {
		return nil, err
	}
	notBefore := time.Time{}
	if nbf, err := mc.GetNotBefore(); err == nil && nbf != nil {
		notBefore = nbf.Time
	}
	if iat, err := mc.GetIssuedAt(); err == nil && iat != nil && iat.After(notBefore) {
		notBefore = iat.Time
	}
	if !notBefore.IsZero() {
		notBefore = notBefore.Add(-v.cfg.Leeway)
	}
	v.cache.put(key, c, notBefore, now)
	return c, nil
}

// checkHeader decodes the JOSE header and returns its alg and kid after
// refusing algorithms outside the allowlist and key-selecting members.
func (v *JWTVerifier) checkHeader(seg string) (alg, kid string, err error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return "", "", fmt.Errorf("%w: header is not base64url", ErrJWTMalformed)
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(raw, &h); err != nil || h == nil {
		return "", "", fmt.Errorf("%w: header is not a json object", ErrJWTMalformed)
	}
	if err := json.Unmarshal(h["alg"], &alg); err != nil || alg == "" {
		return "", "", fmt.Errorf("%w: missing or non-string alg", ErrJWTAlgorithm)
	}
	if _, ok := v.allowed[alg]; !ok {
		return "", "", fmt.Errorf("%w: %q", ErrJWTAlgorithm, truncate(alg, 16))
	}
	for _, name := range refusedHeaders {
		if _, ok := h[name]; ok {
			return "", "", fmt.Errorf("%w: %q header present", ErrJWTHeader, name)
		}
	}
	if rk, ok := h["kid"]; ok {
		if err := json.Unmarshal(rk, &kid); err != nil || kid == "" {
			return "", "", fmt.Errorf("%w: kid must be a non-empty string", ErrJWTHeader)
		}
	}
	return alg, kid, nil
}

// claims extracts the user, scopes and expiry from verified claims.
func (v *JWTVerifier) claims(mc jwt.MapClaims, token, alg string) (*Claims, error) {
	uv, ok := lookupClaim(mc, v.cfg.UserClaim)
	if !ok {
		return nil, fmt.Errorf("%w: user claim %q missing", ErrJWTInvalid, v.cfg.UserClaim)
	}
	user, ok := uv.(string)
	if !ok || strings.TrimSpace(user) == "" {
		return nil, fmt.Errorf("%w: user claim %q is not a non-empty string", ErrJWTInvalid, v.cfg.UserClaim)
	}
	var scopes []string
	if sv, ok := lookupClaim(mc, v.cfg.ScopeClaim); ok {
		switch sv := sv.(type) {
		case string:
			scopes = strings.Fields(sv)
			if scopes == nil {
				scopes = []string{}
			}
		case []any:
			scopes = make([]string, 0, len(sv))
			for _, e := range sv {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("%w: scope claim %q has a non-string element", ErrJWTInvalid, v.cfg.ScopeClaim)
				}
				scopes = append(scopes, s)
			}
		default:
			return nil, fmt.Errorf("%w: scope claim %q must be a string or an array of strings", ErrJWTInvalid, v.cfg.ScopeClaim)
		}
	}
	exp, err := mc.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, fmt.Errorf("%w: exp missing", ErrJWTInvalid)
	}
	return &Claims{
		User:        user,
		Scopes:      scopes,
		ScopeClaim:  v.cfg.ScopeClaim,
		Expires:     exp.Time,
		Raw:         map[string]any(mc),
		Fingerprint: Fingerprint(token),
		Alg:         alg,
	}, nil
}

// lookupClaim follows a dot path ("realm.roles") through nested objects.
// A claim whose own name contains a dot is found first by its full name.
func lookupClaim(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	cur := any(m)
	for part := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// LooksLikeJWT reports whether s has the shape of a compact JWS: exactly
// two dots separating three non-empty base64url segments. It runs in one
// pass over s and allocates nothing, so hostile inputs with many dots cost
// O(len(s)).
func LooksLikeJWT(s string) bool {
	dots, segLen := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if segLen == 0 {
				return false
			}
			dots++
			if dots > 2 {
				return false
			}
			segLen = 0
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			segLen++
		default:
			return false
		}
	}
	return dots == 2 && segLen > 0
}

// truncate shortens attacker-controlled text before it goes into an error.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

package edge

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// minTokenSecretLen is the shortest static token secret accepted; shorter
// secrets are guessable within the rate limiter's budget.
const minTokenSecretLen = 16

// Errors returned by TokenSet.Lookup. They name no token, so they are safe
// to show to the caller.
var (
	// ErrUnknownToken means the secret matches no configured token.
	ErrUnknownToken = errors.New("unknown token")
	// ErrTokenExpired means the secret matches a token past its expiry.
	ErrTokenExpired = errors.New("token expired")
)

// TokenSpec configures one static bearer token. Exactly one of Secret and
// Hash identifies it; only the SHA-256 of the secret is kept.
type TokenSpec struct {
	// Name identifies the token in rules ("token:<name>") and logs. It must
	// match [A-Za-z0-9._-]+ and be unique in the set.
	Name string
	// Secret is the token's secret, at least 16 bytes. It is hashed at once
	// and not retained.
	Secret []byte
	// Hash is the 32-byte SHA-256 of the secret, used when Secret is nil so
	// that config files need not hold the secret itself.
	Hash []byte
	// User is the identity forwarded for this token; default "token:<name>".
	User string
	// Scopes caps the scopes a request authenticated with this token can
	// get; nil means the token adds no cap (the rule's scopes apply).
	Scopes []string
	// Expires is when the token stops working; zero means never.
	Expires time.Time
}

// Token is an authenticated static token as seen by the policy and logs.
// It carries no secret.
type Token struct {
	// Name is the token's configured name.
	Name string
	// User is the configured user identity, "" for the default.
	User string
	// Scopes is the token's scope cap; nil means no cap.
	Scopes []string
	// Expires is the token's expiry; zero means never.
	Expires time.Time
	// Fingerprint is the first 8 hex digits of the secret's SHA-256, safe
	// to log to tell tokens apart.
	Fingerprint string

	// forward is the user forwarded for this token, worked out once by
	// NewTokenSet so the allow path does not build "token:<name>" per request.
	forward string
}

// tokenEntry is one stored token: its hash and the public view of it.
type tokenEntry struct {
	hash [sha256.Size]byte
	tok  Token
}

// TokenSet holds static bearer tokens as SHA-256 hashes and looks secrets up
// in constant time with respect to which token matched. It is immutable
// after NewTokenSet and safe for concurrent use.
type TokenSet struct {
	entries []tokenEntry
}

// NewTokenSet validates specs and builds a TokenSet. It refuses empty or
// duplicate names, duplicate secrets, secrets shorter than 16 bytes, hashes
// that are not 32 bytes, invalid users and invalid scope names; the error
// names the token, e.g. `token "ci": secret shorter than 16 bytes`.
func NewTokenSet(specs []TokenSpec) (*TokenSet, error) {
	s := &TokenSet{entries: make([]tokenEntry, 0, len(specs))}
	names := make(map[string]bool, len(specs))
	hashes := make(map[[sha256.Size]byte]string, len(specs))
	for i, spec := range specs {
		if spec.Name == "" {
			return nil, fmt.Errorf("tokens[%d]: empty name", i)
		}
		if !validTokenName(spec.Name) {
			return nil, fmt.Errorf("token %q: name must match [A-Za-z0-9._-]+", spec.Name)
		}
		if names[spec.Name] {
			return nil, fmt.Errorf("token %q: duplicate name", spec.Name)
		}
		names[spec.Name] = true

		var e tokenEntry
		switch {
		case spec.Secret != nil:
			if len(spec.Secret) < minTokenSecretLen {
				return nil, fmt.Errorf("token %q: secret shorter than %d bytes", spec.Name, minTokenSecretLen)
			}
			e.hash = sha256.Sum256(spec.Secret)
			if spec.Hash != nil && !bytes.Equal(spec.Hash, e.hash[:]) {
				return nil, fmt.Errorf("token %q: hash does not match secret", spec.Name)
			}
		case spec.Hash != nil:
			if len(spec.Hash) != sha256.Size {
				return nil, fmt.Errorf("token %q: hash must be %d bytes of sha-256, got %d", spec.Name, sha256.Size, len(spec.Hash))
			}
			copy(e.hash[:], spec.Hash)
		default:
			return nil, fmt.Errorf("token %q: no secret or hash", spec.Name)
		}
		if other, dup := hashes[e.hash]; dup {
			return nil, fmt.Errorf("token %q: same secret as token %q", spec.Name, other)
		}
		hashes[e.hash] = spec.Name

		user := ""
		if spec.User != "" {
			u, ok := normalizeUser(spec.User)
			if !ok {
				return nil, fmt.Errorf("token %q: invalid user %q", spec.Name, spec.User)
			}
			user = u
		}
		var scopes []string
		if spec.Scopes != nil {
			scopes = make([]string, 0, len(spec.Scopes))
			for _, sc := range spec.Scopes {
				if !validScope(sc) {
					return nil, fmt.Errorf("token %q: invalid scope %q: must match [a-z0-9._-]+", spec.Name, sc)
				}
				scopes = append(scopes, sc)
			}
		}
		e.tok = Token{
			Name:        spec.Name,
			User:        user,
			Scopes:      scopes,
			Expires:     spec.Expires,
			Fingerprint: hex.EncodeToString(e.hash[:4]),
		}
		if user != "" {
			e.tok.forward = user
		} else if u, ok := normalizeUser("token:" + spec.Name); ok {
			e.tok.forward = u
		}
		s.entries = append(s.entries, e)
	}
	return s, nil
}

// Len returns the number of tokens in the set.
func (s *TokenSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.entries)
}

// Lookup finds the token whose secret is secret. It hashes the secret and
// compares the hash with every stored hash without stopping at a match, so
// timing reveals neither which token matched nor how far a guess got. The
// returned Token is shared and must not be modified.
func (s *TokenSet) Lookup(secret string, now time.Time) (*Token, error) {
	if secret == "" {
		return nil, ErrUnknownToken
	}
	return s.LookupDigest(DigestOf(secret), now)
}

// Digest is the SHA-256 of a bearer credential: computed once per request, it
// serves the token lookup, the JWT cache and the log fingerprint.
type Digest [32]byte

// DigestOf hashes a bearer credential without copying it.
func DigestOf(secret string) Digest { return sum256(secret) }

// Fingerprint is the short hex prefix of the digest that names a credential in
// logs.
func (d Digest) Fingerprint() string { return hex.EncodeToString(d[:4]) }

// LookupDigest is Lookup for a credential already hashed with DigestOf.
func (s *TokenSet) LookupDigest(h Digest, now time.Time) (*Token, error) {
	if s == nil {
		return nil, ErrUnknownToken
	}
	match := -1
	for i := range s.entries {
		eq := subtle.ConstantTimeCompare(h[:], s.entries[i].hash[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return nil, ErrUnknownToken
	}
	t := &s.entries[match].tok
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return nil, ErrTokenExpired
	}
	return t, nil
}

// Fingerprint returns a short SHA-256 hex prefix of secret that identifies
// it in logs without revealing it.
func Fingerprint(secret string) string {
	return DigestOf(secret).Fingerprint()
}

// validTokenName reports whether name is usable in a "token:<name>" rule.
func validTokenName(name string) bool {
	if len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return name != ""
}

// validScope reports whether s is a scope name OpenClaw can receive in the
// comma-separated x-openclaw-scopes header.
func validScope(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

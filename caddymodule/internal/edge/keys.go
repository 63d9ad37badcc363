package edge

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// ParsePublicKeysPEM parses every PEM block in data: "PUBLIC KEY" (PKIX),
// "RSA PUBLIC KEY" (PKCS #1) and "CERTIFICATE" (its subject key). Any other
// block, a private key in particular, is an error, as is data with no
// block. Keys must be RSA, ECDSA or Ed25519.
func ParsePublicKeysPEM(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	rest := data
	for i := 0; ; i++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var (
			key crypto.PublicKey
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("pem block %d: unsupported type %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", i, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("pem block %d (%s): %w", i, block.Type, err)
		}
		switch key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("pem block %d (%s): unsupported key type %T", i, block.Type, key)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no pem public key found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the last pem block")
	}
	return keys, nil
}

// jwk is the subset of RFC 7517/7518/8037 members the guard reads, plus the
// private members it refuses.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`

	D   *json.RawMessage `json:"d"`
	P   *json.RawMessage `json:"p"`
	Q   *json.RawMessage `json:"q"`
	DP  *json.RawMessage `json:"dp"`
	DQ  *json.RawMessage `json:"dq"`
	QI  *json.RawMessage `json:"qi"`
	Oth *json.RawMessage `json:"oth"`
}

// ParseJWKS parses a JWK set ({"keys":[...]}). RSA, EC P-256 and OKP
// Ed25519 keys are returned by kid; symmetric "oct" keys are returned
// separately as HMAC secrets. A key with private members (d, p, q, ...) is an
// error, since a public config must never hold them; so are duplicate or
// missing kids on public keys, unknown key types and curves, and keys
// marked "use":"enc", which the set's owner did not mean for signatures.
func ParseJWKS(data []byte) (map[string]crypto.PublicKey, [][]byte, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("parsing jwks: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New("parsing jwks: no \"keys\" array")
	}
	byID := make(map[string]crypto.PublicKey)
	var secrets [][]byte
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, nil, fmt.Errorf("jwks key %d: %w", i, err)
		}
		if k.D != nil || k.P != nil || k.Q != nil || k.DP != nil || k.DQ != nil || k.QI != nil || k.Oth != nil {
			return nil, nil, fmt.Errorf("jwks key %d: contains private key material; publish only public keys", i)
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, nil, fmt.Errorf("jwks key %d: use %q is not \"sig\"", i, k.Use)
		}
		if k.Kty == "oct" {
			secret, err := b64url(k.K)
			if err != nil || len(secret) == 0 {
				return nil, nil, fmt.Errorf("jwks key %d: invalid oct key", i)
			}
			secrets = append(secrets, secret)
			continue
		}
		key, err := parseJWKPublic(&k)
		if err != nil {
			return nil, nil, fmt.Errorf("jwks key %d: %w", i, err)
		}
		if k.Kid == "" {
			return nil, nil, fmt.Errorf("jwks key %d: missing kid", i)
		}
		if _, dup := byID[k.Kid]; dup {
			return nil, nil, fmt.Errorf("jwks key %d: duplicate kid %q", i, k.Kid)
		}
		byID[k.Kid] = key
	}
	return byID, secrets, nil
}

// parseJWKPublic decodes an RSA, EC or OKP public JWK.
func parseJWKPublic(k *jwk) (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64url(k.N)
		if err != nil || len(n) == 0 {
			return nil, errors.New("invalid rsa modulus")
		}
		e, err := b64url(k.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("invalid rsa exponent")
		}
		exp := int(new(big.Int).SetBytes(e).Int64())
		if exp < 3 || exp%2 == 0 {
			return nil, errors.New("invalid rsa exponent")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("unsupported ec curve %q", k.Crv)
		}
		x, errX := b64url(k.X)
		y, errY := b64url(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("invalid ec coordinates")
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return nil, fmt.Errorf("invalid ec point: %w", err)
		}
		return pub, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported okp curve %q", k.Crv)
		}
		x, err := b64url(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("invalid ed25519 key")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported kty %q", k.Kty)
}

// b64url decodes unpadded base64url as JWK members use it.
func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(s)
}

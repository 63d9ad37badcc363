package edge

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxUserLen bounds the forwarded user identity; OpenClaw stores it in
// pairing records and logs, so an unbounded value is a liability.
const maxUserLen = 256

// taggedDevicesLogin is the login Tailscale reports for every tagged node.
const taggedDevicesLogin = "tagged-devices"

// Identity is everything the guard knows about the caller of one request:
// the tailnet device (from Tailscale WhoIs) and the credential it presented.
// The policy decides on it and User derives the identity forwarded upstream.
type Identity struct {
	// OnTailnet reports whether the request arrived over the tailnet and WhoIs
	// identified the peer. The fields below up to Caps are zero when false.
	OnTailnet bool
	// Login is the tailnet login name, e.g. "alice@example.com"; it is "" or
	// "tagged-devices" for tagged nodes, which belong to no user.
	Login string
	// DisplayName is the user's display name; informational only.
	DisplayName string
	// Node is the short node name (first DNS label, e.g. "alice-laptop").
	// It is unique only within the device's own tailnet.
	Node string
	// NodeFQDN is the device's full MagicDNS name without the trailing dot,
	// e.g. "alice-laptop.tail1234.ts.net".
	NodeFQDN string
	// NodeID is the stable node ID.
	NodeID string
	// Tags are the device's ACL tags, e.g. "tag:ci".
	Tags []string
	// Tailnet is the MagicDNS suffix of the tailnet the device belongs to,
	// e.g. "tail1234.ts.net".
	Tailnet string
	// HomeTailnet is the MagicDNS suffix of the tailnet of the node that
	// accepted the connection. A device whose Tailnet differs (one of a
	// tailnet this node was shared into), or when either is unknown, is
	// foreign: see OwnTailnet.
	HomeTailnet string
	// Caps are the peer's app capabilities in tailcfg.PeerCapMap shape:
	// capability name to a list of raw JSON values granted by the ACL of the
	// accepting node's own tailnet (so they hold for foreign devices too).
	Caps map[string][]json.RawMessage

	// Token is the static edge token that authenticated this request, nil if
	// none. It is shared with the TokenSet and must not be modified.
	Token *Token
	// JWT is the verified JWT of this request, nil if none. It may be shared
	// with the verifier's cache and must not be modified.
	JWT *Claims
}

// User returns the normalised identity to forward to OpenClaw in the user
// header, and false if there is none or it is not safe to forward.
//
// Precedence: the tailnet login of an untagged device; else the JWT user
// claim; else the static token's User ("token:<name>" by default); else a
// tagged device's "node:<node>" ("node:<full name>" for a device of another
// tailnet, whose short name may equal one of ours). A person's tailnet login wins over any
// bearer because the WireGuard identity cannot be replayed, while a bearer
// can be copied. The chosen value is trimmed and ASCII-lowercased; if it is
// then empty, longer than 256 bytes, not valid UTF-8, or contains a comma, a
// control or another non-printable character, User returns false rather than
// falling through to a weaker identity. A JWT user that starts with
// "node:" or "token:" is refused too, so that an issuer's user names cannot
// impersonate device or token identities.
func (id *Identity) User() (string, bool) {
	if id == nil {
		return "", false
	}
	if id.OnTailnet && !id.IsTagged() && id.Login != "" {
		return normalizeUser(id.Login)
	}
	if id.JWT != nil && id.JWT.User != "" {
		u, ok := normalizeUser(id.JWT.User)
		if !ok || strings.HasPrefix(u, "node:") || strings.HasPrefix(u, "token:") {
			// An issuer's user names are not ours to vouch for: one
			// spelled like a device or token identity would pass for it.
			return "", false
		}
		return u, true
	}
	if id.Token != nil {
		if id.Token.forward != "" {
			return id.Token.forward, true
		}
		if id.Token.User != "" {
			return normalizeUser(id.Token.User)
		}
		return normalizeUser("token:" + id.Token.Name)
	}
	if id.OnTailnet && id.IsTagged() {
		if !id.OwnTailnet() {
			if id.NodeFQDN == "" {
				return "", false
			}
			return normalizeUser("node:" + id.NodeFQDN)
		}
		if id.Node != "" {
			return normalizeUser("node:" + id.Node)
		}
	}
	return "", false
}

// OwnTailnet reports whether the device belongs to the tailnet of the node
// that accepted its connection. A device of another tailnet (this node was
// shared into it) does not, and neither does one whose tailnet or the
// node's own cannot be told: its short name and tags are another admin's
// to choose.
func (id *Identity) OwnTailnet() bool {
	return id != nil && id.OnTailnet && id.Tailnet != "" && strings.EqualFold(id.Tailnet, id.HomeTailnet)
}

// IsTagged reports whether the device is tagged. Tagged devices are owned by
// the tailnet rather than a person, so their login is not an identity.
func (id *Identity) IsTagged() bool {
	if id == nil || !id.OnTailnet {
		return false
	}
	return len(id.Tags) > 0 || id.Login == taggedDevicesLogin
}

// HasTag reports whether the device carries the ACL tag t ("tag:ci"),
// compared case-insensitively.
func (id *Identity) HasTag(t string) bool {
	if id == nil || !id.OnTailnet {
		return false
	}
	for _, have := range id.Tags {
		if strings.EqualFold(have, t) {
			return true
		}
	}
	return false
}

// normalizeUser trims and ASCII-lowercases s and reports whether the result
// is safe to put into a header that OpenClaw compares against allowUsers.
// Commas are refused because the user header may be read as a list.
func normalizeUser(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxUserLen {
		return "", false
	}
	if !validUserChars(s) {
		return "", false
	}
	return asciiLower(s), true
}

// validUserChars reports whether s is valid UTF-8 made only of printable
// characters other than a comma.
func validUserChars(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f || c == ',' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		if !unicode.IsPrint(r) {
			return false
		}
		i += size
	}
	return true
}

// asciiLower lowercases ASCII letters only, without allocating when s has
// none, so that non-ASCII logins are forwarded byte-for-byte.
func asciiLower(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			break
		}
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

package edge

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// Canonical names of the headers the guard sets for OpenClaw.
const (
	headerXFF    = "X-Forwarded-For"
	headerXFP    = "X-Forwarded-Proto"
	headerXFH    = "X-Forwarded-Host"
	headerScopes = "X-Openclaw-Scopes"
)

// protectedExact are normalised header names a client must never supply:
// OpenClaw (or a proxy on the way) would read them as the guard's word.
var protectedExact = [...]string{
	"forwarded",
	"x-real-ip",
	"x-forwarded",
	"x-openclaw-scopes",
	"x-client-ip",
	"true-client-ip",
	"cf-connecting-ip",
	"x-original-forwarded-for",
}

// protectedPrefixes are normalised name prefixes a client must never supply.
var protectedPrefixes = [...]string{"x-forwarded-", "tailscale-"}

// keptConnectionTokens are the only Connection tokens passed on. Any other
// token names a header that the reverse proxy would strip as hop-by-hop,
// which would let a client delete the identity headers the guard sets.
var keptConnectionTokens = [...]string{"upgrade", "keep-alive", "close"}

// NormalizeName returns the name under which a header is compared:
// lowercased, with '_' and '.' turned into '-', because servers such as
// Node may treat those spellings as the same header. It does not allocate
// when name is already normalised.
func NormalizeName(name string) string {
	i := 0
	for ; i < len(name); i++ {
		c := name[i]
		if ('A' <= c && c <= 'Z') || c == '_' || c == '.' {
			break
		}
	}
	if i == len(name) {
		return name
	}
	b := []byte(name)
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case c == '_' || c == '.':
			b[i] = '-'
		}
	}
	return string(b)
}

// HeaderCleaner removes client-supplied identity and forwarding headers. It
// holds the normalised extra names so that per-request cleaning allocates
// nothing beyond what the header map itself needs.
type HeaderCleaner struct {
	extra []string
	// first holds the normalised first bytes of the extra names, so most
	// headers are cleared by one lookup.
	first [256]bool
}

// protectedFirst holds the normalised first bytes of the built-in
// protected names and prefixes.
var protectedFirst = func() (first [256]bool) {
	for _, p := range protectedExact {
		first[p[0]] = true
	}
	for _, p := range protectedPrefixes {
		first[p[0]] = true
	}
	return first
}()

// NewHeaderCleaner returns a cleaner that also removes the extra names
// (typically the configured user header and OpenClaw's required headers).
func NewHeaderCleaner(extra []string) *HeaderCleaner {
	hc := &HeaderCleaner{}
	for _, e := range extra {
		if e = NormalizeName(strings.TrimSpace(e)); e != "" && !slices.Contains(hc.extra, e) {
			hc.extra = append(hc.extra, e)
			hc.first[e[0]] = true
		}
	}
	return hc
}

// Protected reports whether a header name, in any spelling, is one the
// client may not send. It compares without building the normalised name.
func (hc *HeaderCleaner) Protected(name string) bool {
	if name == "" {
		return false
	}
	if c := normByte(name[0]); !protectedFirst[c] && (hc == nil || !hc.first[c]) {
		return false
	}
	for _, p := range protectedExact {
		if len(name) == len(p) && hasPrefixNorm(name, p) {
			return true
		}
	}
	for _, p := range protectedPrefixes {
		if hasPrefixNorm(name, p) {
			return true
		}
	}
	if hc != nil {
		for _, e := range hc.extra {
			if len(name) == len(e) && hasPrefixNorm(name, e) {
				return true
			}
		}
	}
	return false
}

// hasPrefixNorm reports whether NormalizeName(name) starts with the
// normalised prefix p.
func hasPrefixNorm(name, p string) bool {
	if len(name) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if normByte(name[i]) != p[i] {
			return false
		}
	}
	return true
}

// normByte normalises one header-name byte as NormalizeName does.
func normByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// Clean deletes every protected header from h and rewrites Connection; see
// CleanRequestHeaders. It returns how many header names were removed.
func (hc *HeaderCleaner) Clean(h http.Header) int {
	removed, _, _ := hc.clean(h, nil)
	return removed
}

// CleanKeeping is Clean, except that it leaves the headers stored under
// exactly the names in keep, which the caller is about to set anyway:
// deleting them first would only make it insert them again.
func (hc *HeaderCleaner) CleanKeeping(h http.Header, keep ...string) int {
	removed, _, _ := hc.clean(h, keep)
	return removed
}

// clean is Clean that also reports, as it goes, the first Authorization
// value and how many there were under any spelling of the name.
func (hc *HeaderCleaner) clean(h http.Header, keep []string) (removed int, auth string, nAuth int) {
	var conn []string
	nConn := 0
	for name, vals := range h {
		countAuthorization(name, vals, &auth, &nAuth)
		if hc.Protected(name) {
			if slices.Contains(keep, name) {
				continue
			}
			delete(h, name)
			removed++
			continue
		}
		if strings.EqualFold(name, "Connection") {
			if nConn == 0 {
				conn = vals
			} else {
				conn = append(slices.Clip(conn), vals...)
			}
			nConn++
			if name != "Connection" {
				delete(h, name)
			}
		}
	}
	if nConn == 1 && len(conn) == 1 && h["Connection"] != nil && onlyKeptTokens(conn[0]) {
		// The common case ("keep-alive", "Upgrade", "keep-alive, Upgrade"):
		// nothing to drop, so nothing to rebuild.
		return removed, auth, nAuth
	}
	if nConn > 0 {
		if kept := filterConnection(conn); kept == "" {
			delete(h, "Connection")
		} else {
			h["Connection"] = []string{kept}
		}
	}
	return removed, auth, nAuth
}

// onlyKeptTokens reports whether a Connection value lists only allowed
// tokens, each once at most, with no empty ones.
func onlyKeptTokens(v string) bool {
	var seen [len(keptConnectionTokens)]bool
	for tok := range strings.SplitSeq(v, ",") {
		tok = strings.Trim(tok, " \t")
		found := false
		for i, k := range keptConnectionTokens {
			if strings.EqualFold(tok, k) {
				if seen[i] {
					return false
				}
				seen[i], found = true, true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// filterConnection keeps only the allowed Connection tokens, lowercased
// and deduplicated, in the order of keptConnectionTokens.
func filterConnection(vals []string) string {
	var seen [len(keptConnectionTokens)]bool
	for _, v := range vals {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			for i, k := range keptConnectionTokens {
				if strings.EqualFold(tok, k) {
					seen[i] = true
				}
			}
		}
	}
	var b strings.Builder
	for i, k := range keptConnectionTokens {
		if seen[i] {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k)
		}
	}
	return b.String()
}

// CleanRequestHeaders deletes every header whose normalised name is
// "forwarded", "x-real-ip", "x-forwarded" or "x-forwarded-*", "x-openclaw-scopes",
// "tailscale-*", "x-client-ip", "true-client-ip", "cf-connecting-ip",
// "x-original-forwarded-for" or one of extra, in any case and with '_' or
// '.' spellings, however often repeated. It also rewrites Connection to
// keep only "upgrade", "keep-alive" and "close": a client that names, say,
// x-openclaw-scopes in Connection would otherwise make the reverse proxy
// delete the header the guard sets. It returns how many header names were
// removed. Callers on a hot path should reuse a HeaderCleaner.
func CleanRequestHeaders(h http.Header, extra []string) int {
	return NewHeaderCleaner(extra).Clean(h)
}

// Forward is what the guard tells OpenClaw about an allowed request.
type Forward struct {
	// ClientIP is the caller's tailnet address; never loopback.
	ClientIP netip.Addr
	// Proto is the scheme the client used, "http" or "https".
	Proto string
	// Host is the host the client asked for.
	Host string
	// UserHeader is the header OpenClaw reads the user from
	// (gateway.auth.trustedProxy.userHeader), e.g. "x-forwarded-user".
	UserHeader string
	// User is the identity to forward; "" sends no user header.
	User string
	// ClientIPString is ClientIP.String(), when the caller already has it.
	ClientIPString string
	// ScopesHeader is ScopesHeader(Scopes), when the caller already has it;
	// when set, it is what is checked and sent.
	ScopesHeader string
	// Scopes is the scope cap, sent even when empty.
	Scopes []string
	// Values, when set, is where the five header values are kept (the
	// caller's own per-request storage); otherwise one array is allocated.
	// The header map's values slice it, so it must outlive the request.
	Values *[5]string
}

// SetForwardHeaders overwrites, never appends: X-Forwarded-For with the
// single ClientIP, X-Forwarded-Proto, X-Forwarded-Host, <UserHeader> with
// User, and X-Openclaw-Scopes with ScopesHeader(Scopes), present even when
// empty because OpenClaw reads an absent header as the full operator set.
// It refuses an invalid, loopback or unspecified ClientIP, since OpenClaw
// treats a loopback client as local, and values that would not survive as
// a single header value.
func SetForwardHeaders(h http.Header, f Forward) error {
	fw, err := NewForwarder(f.UserHeader)
	if err != nil {
		return err
	}
	return fw.Set(h, f)
}

// Forwarder sets the forwarding headers for one configured user header,
// checked once by NewForwarder rather than on every request.
type Forwarder struct {
	userKey string
}

// NewForwarder checks the user header OpenClaw reads the user from: a valid
// header name that does not collide with a header the guard sets.
func NewForwarder(userHeader string) (*Forwarder, error) {
	userKey := http.CanonicalHeaderKey(strings.TrimSpace(userHeader))
	if userKey == "" || !validHeaderName(userKey) {
		return nil, fmt.Errorf("setting forward headers: invalid user header %q", truncate(userHeader, 64))
	}
	for _, name := range []string{"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-openclaw-scopes", "connection"} {
		if sameNormalizedName(userKey, name) {
			return nil, fmt.Errorf("setting forward headers: user header %q collides with a header the guard sets", userKey)
		}
	}
	return &Forwarder{userKey: userKey}, nil
}

// UserKey is the user header in canonical form.
func (fw *Forwarder) UserKey() string { return fw.userKey }

// Set is SetForwardHeaders with the Forwarder's user header; f.UserHeader is
// ignored.
func (fw *Forwarder) Set(h http.Header, f Forward) error {
	ip := f.ClientIP.Unmap().WithZone("")
	if !ip.IsValid() {
		return errors.New("setting forward headers: invalid client ip")
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return fmt.Errorf("setting forward headers: refusing to forward client ip %s", ip)
	}
	if f.Proto != "http" && f.Proto != "https" {
		return fmt.Errorf("setting forward headers: proto %q is not http or https", truncate(f.Proto, 16))
	}
	if !validForwardedHost(f.Host) {
		return errors.New("setting forward headers: invalid host")
	}
	if f.User != "" {
		if len(f.User) > maxUserLen || !validUserChars(f.User) || f.User != strings.TrimSpace(f.User) {
			return errors.New("setting forward headers: invalid user")
		}
	}
	if f.ScopesHeader != "" {
		// The caller's own join of the scopes: check it as it will be sent.
		for sc := range strings.SplitSeq(f.ScopesHeader, ",") {
			if !validScope(sc) {
				return fmt.Errorf("setting forward headers: invalid scope %q", truncate(sc, 64))
			}
		}
	} else {
		for _, s := range f.Scopes {
			if !validScope(s) {
				return fmt.Errorf("setting forward headers: invalid scope %q", truncate(s, 64))
			}
		}
	}
	ipString := f.ClientIPString
	if ipString == "" || f.ClientIP != ip {
		ipString = ip.String()
	}
	scopes := f.ScopesHeader
	if scopes == "" && len(f.Scopes) > 0 {
		scopes = ScopesHeader(f.Scopes)
	}
	// One backing array for the five values: one allocation, not five, or
	// none when the caller brings it.
	vals := f.Values
	if vals == nil {
		vals = new([5]string)
	}
	*vals = [5]string{ipString, f.Proto, f.Host, f.User, scopes}
	all := vals[:]
	h[headerXFF] = all[0:1:1]
	h[headerXFP] = all[1:2:2]
	h[headerXFH] = all[2:3:3]
	if f.User != "" {
		h[fw.userKey] = all[3:4:4]
	} else {
		delete(h, fw.userKey)
	}
	h[headerScopes] = all[4:5:5]
	return nil
}

// sameNormalizedName reports whether a and b name the same header once case,
// '_' and '.' are ignored, without allocating.
func sameNormalizedName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := lowerDash(a[i]), lowerDash(b[i])
		if ca != cb {
			return false
		}
	}
	return true
}

func lowerDash(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// validHeaderName reports whether s is an HTTP token.
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// validHeaderValue reports whether s has no control characters.
// validForwardedHost reports whether a Host can be sent as a single
// X-Forwarded-Host value: not empty, no control characters, no comma or space.
func validForwardedHost(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c == 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// credentialParams are query parameter names, squashed (lowercase, no
// '-', '_' or '.'), that carry credentials. Credentials in URLs end up in
// logs, browser history and Referer headers, so the guard refuses them.
var credentialParams = map[string]bool{
	"accesstoken":   true,
	"token":         true,
	"idtoken":       true,
	"jwt":           true,
	"auth":          true,
	"authorization": true,
	"bearer":        true,
	"apikey":        true,
	"key":           true,
	"password":      true,
	"secret":        true,
}

// QueryCredential reports whether a raw query string carries a parameter
// whose name looks like a credential (access_token, token, id_token, jwt,
// auth, authorization, bearer, api_key, apikey, key, password, secret), in
// any case, with '-', '_' or '.' separators, and also when the name is
// percent-encoded (even repeatedly) or '+'-encoded.
func QueryCredential(rawQuery string) bool {
	for rawQuery != "" {
		var part string
		i := strings.IndexAny(rawQuery, "&;")
		if i < 0 {
			part, rawQuery = rawQuery, ""
		} else {
			part, rawQuery = rawQuery[:i], rawQuery[i+1:]
		}
		name, _, _ := strings.Cut(part, "=")
		if name == "" {
			continue
		}
		for range 3 {
			if !strings.ContainsAny(name, "%+") {
				break
			}
			name = lenientUnescape(name)
		}
		if credentialParams[squash(name)] {
			return true
		}
	}
	return false
}

// lenientUnescape decodes valid %XX escapes and '+' and keeps invalid
// escapes as they are, as browsers' and Node's URLSearchParams do.
func lenientUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// squash lowercases s and drops separators, spaces and brackets so that
// spelling variants of one parameter name compare equal.
func squash(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '-' || c == '_' || c == '.' || c == '[' || c == ']' || c <= ' ' || c == 0x7f:
			// Separators, spaces and control characters (a decoded "%0Dkey"
			// must still read as "key") do not make a name harmless.
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + ('a' - 'A'))
		default:
			b.WriteByte(c)
		}
		if b.Len() > 32 {
			return "" // longer than any credential name
		}
	}
	return b.String()
}

// isHex reports whether c is a hex digit.
func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unhex returns the value of hex digit c.
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// BearerToken extracts the token from the Authorization header: exactly
// one header value, scheme "Bearer" in any case, one space, and a
// non-empty token without spaces or control characters. It returns ("",
// nil) when there is no Authorization header and an error for malformed,
// repeated or non-Bearer ones; the error never contains the token.
func BearerToken(h http.Header) (string, error) {
	var val string
	n := 0
	for name, vals := range h {
		countAuthorization(name, vals, &val, &n)
	}
	return parseBearer(val, n)
}

// countAuthorization adds the values of a header to the count n if its name
// is any spelling of Authorization, keeping a first value in val.
func countAuthorization(name string, vals []string, val *string, n *int) {
	if len(name) != len("Authorization") || !strings.EqualFold(name, "Authorization") {
		return
	}
	*n += len(vals)
	if len(vals) > 0 {
		*val = vals[0]
	}
}

// CleanBearer is BearerToken of the headers as they arrive followed by Clean,
// in one pass over the header map instead of two.
func (hc *HeaderCleaner) CleanBearer(h http.Header) (bearer string, removed int, err error) {
	removed, val, n := hc.clean(h, nil)
	bearer, err = parseBearer(val, n)
	return bearer, removed, err
}

// parseBearer reads the Authorization header from its first value val and
// the number n of values under any spelling of its name.
func parseBearer(val string, n int) (string, error) {
	switch {
	case n == 0:
		return "", nil
	case n > 1:
		return "", errors.New("more than one authorization header")
	}
	const scheme = "bearer "
	if len(val) < len(scheme) || !strings.EqualFold(val[:len(scheme)], scheme) {
		if sp := strings.IndexByte(val, ' '); sp > 0 && sp <= 16 && validHeaderName(val[:sp]) {
			return "", fmt.Errorf("unsupported authorization scheme %q", val[:sp])
		}
		return "", errors.New("malformed authorization header")
	}
	tok := val[len(scheme):]
	if tok == "" {
		return "", errors.New("empty bearer token")
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= 0x20 || c >= 0x7f {
			return "", errors.New("malformed bearer token")
		}
	}
	return tok, nil
}

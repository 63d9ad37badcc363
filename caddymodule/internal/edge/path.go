package edge

import "strings"

// HasDotSegment reports whether the URL path p has a "." or ".." segment,
// with segments split at '/' and '\' and the dots possibly spelled %2e, as
// the WHATWG URL parser (OpenClaw's) reads the path of an http URL. Such a
// path names one route to Caddy's matchers and, once OpenClaw resolves it,
// another to the gateway.
func HasDotSegment(p string) bool {
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' && p[i] != '\\' {
			continue
		}
		if isDotSegment(p[start:i]) {
			return true
		}
		start = i + 1
	}
	return false
}

// isDotSegment reports whether seg is ".", "..", or either with a dot
// spelled %2e (any case).
func isDotSegment(seg string) bool {
	dots := 0
	for seg != "" {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'e' || seg[2] == 'E'):
			seg = seg[3:]
		default:
			return false
		}
		dots++
		if dots > 2 {
			return false
		}
	}
	return dots > 0
}

// PathHasPrefix reports whether the escaped path p, as it is sent upstream,
// is prefix or under it as OpenClaw reads it: p must have no dot segment and
// no '\' (which OpenClaw reads as '/'), so that what is compared here is
// what the gateway routes on.
func PathHasPrefix(p, prefix string) bool {
	return !HasDotSegment(p) && !strings.ContainsRune(p, '\\') && strings.HasPrefix(p, prefix)
}

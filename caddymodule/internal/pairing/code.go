package pairing

import (
	"crypto/rand"
	"fmt"
	"strings"
)

// codeAlphabet leaves out 0/O and 1/I, which people misread when they copy a
// code from one screen to another. 32 symbols: one random byte's low five bits
// pick one without bias.
const codeAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

// codeLen is the number of symbols in a code (40 bits): enough that two
// pending devices never share one by chance, short enough to read aloud.
const codeLen = 8

// newCode returns a fresh pairing code such as "7KQM-2XHD".
func newCode() (string, error) {
	var b [codeLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating pairing code: %w", err)
	}
	for i := range b {
		b[i] = codeAlphabet[b[i]&31]
	}
	return string(b[:4]) + "-" + string(b[4:]), nil
}

// ParseCode returns the canonical form ("7KQM-2XHD") of a pairing code as a
// person may type it: any case, with or without the dash or spaces. It
// reports whether s is a code at all.
func ParseCode(s string) (string, bool) {
	if len(s) > 4*codeLen {
		return "", false
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			continue
		case 'a' <= r && r <= 'z':
			r -= 'a' - 'A'
		}
		if r > 0x7f || !strings.ContainsRune(codeAlphabet, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	c := b.String()
	if len(c) != codeLen {
		return "", false
	}
	return c[:4] + "-" + c[4:], true
}

package tsnet

import (
	"fmt"
	"os"
	"strings"
)

// Logf receives log lines, printf style. A nil Logf discards them.
type Logf func(format string, args ...any)

// envSecrets are the environment variables tsnet reads credentials from when
// the corresponding Server field is empty.
var envSecrets = []string{"TS_AUTHKEY", "TS_AUTH_KEY", "TS_CLIENT_SECRET", "TS_ID_TOKEN"}

// tsnetAuthLoopPrefix starts the line tsnet's printAuthURLLoop repeats every
// few seconds while a node waits for an interactive login. Node prints the
// URL once itself, so that line is dropped.
const tsnetAuthLoopPrefix = "To start this tsnet server"

// logSink wraps an injected Logf: it removes secrets from every line and,
// for the user-facing sink, drops tsnet's repeating login-URL line.
type logSink struct {
	out          Logf
	redact       *strings.Replacer // nil when there is nothing to redact
	dropAuthLoop bool
}

// newRedactor returns a replacer that swaps each non-empty secret for its
// fingerprint, or nil if there is none.
func newRedactor(secrets ...string) *strings.Replacer {
	var pairs []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		pairs = append(pairs, s, "[redacted "+fingerprint(s)+"]")
	}
	if len(pairs) == 0 {
		return nil
	}
	return strings.NewReplacer(pairs...)
}

// nodeSecrets lists every credential a node started with cfg could use.
func nodeSecrets(cfg Config) []string {
	secrets := []string{cfg.AuthKey}
	for _, name := range envSecrets {
		secrets = append(secrets, os.Getenv(name))
	}
	return secrets
}

func (s *logSink) logf(format string, args ...any) {
	if s.out == nil {
		return
	}
	if s.dropAuthLoop && strings.HasPrefix(format, tsnetAuthLoopPrefix) {
		return
	}
	if s.redact == nil {
		s.out(format, args...)
		return
	}
	s.out("%s", s.redact.Replace(fmt.Sprintf(format, args...)))
}

package edge

import (
	"hash/maphash"
	"sync"
	"time"
)

// Limiter defaults, used for zero arguments to NewLimiter.
const (
	defaultMaxFailures = 10
	defaultWindow      = time.Minute
	defaultLockout     = 5 * time.Minute
	defaultMaxKeys     = 10000
	maxLimiterShards   = 32
	minPerShard        = 16
)

// Limiter counts failed authentications per key (typically the client's
// tailnet address) and locks a key out for a while once it fails too often
// within a window. It holds at most maxKeys keys, so a flood of distinct
// keys costs bounded memory. State is per process by design. It is safe for
// concurrent use.
type Limiter struct {
	maxFailures int
	window      time.Duration
	lockout     time.Duration
	perShard    int
	seed        maphash.Seed
	shards      []limiterShard
}

// limiterShard is one lock's worth of keys.
type limiterShard struct {
	mu sync.RWMutex
	m  map[string]limiterEntry
}

// limiterEntry is the failure record of one key.
type limiterEntry struct {
	failures    int
	windowStart time.Time
	lockedUntil time.Time
	lastSeen    time.Time
}

// NewLimiter returns a limiter that locks a key out for lockout after
// maxFailures failures within window, tracking at most maxKeys keys.
// Zero (or negative) arguments take the defaults 10, 1m, 5m and 10000.
func NewLimiter(maxFailures int, window, lockout time.Duration, maxKeys int) *Limiter {
	if maxFailures <= 0 {
		maxFailures = defaultMaxFailures
	}
	if window <= 0 {
		window = defaultWindow
	}
	if lockout <= 0 {
		lockout = defaultLockout
	}
	if maxKeys <= 0 {
		maxKeys = defaultMaxKeys
	}
	// Shards hold at least minPerShard keys, so a few lockouts landing in one
	// shard still leave room for other keys.
	n := maxLimiterShards
	for n > 1 && maxKeys/n < minPerShard {
		n /= 2
	}
	l := &Limiter{
		maxFailures: maxFailures,
		window:      window,
		lockout:     lockout,
		perShard:    maxKeys / n, // floor: the sum over shards never exceeds maxKeys
		seed:        maphash.MakeSeed(),
		shards:      make([]limiterShard, n),
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]limiterEntry)
	}
	return l
}

// shard returns the shard for key; the seed is random per limiter so that
// keys chosen by a client cannot all land in one shard.
func (l *Limiter) shard(key string) *limiterShard {
	return &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
}

// Blocked reports whether key is locked out at now, and for how long. It
// takes only a read lock and does not allocate.
func (l *Limiter) Blocked(key string, now time.Time) (retryAfter time.Duration, blocked bool) {
	s := l.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	if ok && now.Before(e.lockedUntil) {
		return e.lockedUntil.Sub(now), true
	}
	return 0, false
}

// Fail records a failed authentication for key at now. When the failure
// is the maxFailures-th within the window, the key is locked out and Fail
// returns the lockout; a key already locked out reports what remains.
func (l *Limiter) Fail(key string, now time.Time) (retryAfter time.Duration, blocked bool) {
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		if len(s.m) >= l.perShard {
			l.evict(s, now)
		}
		if len(s.m) >= l.perShard {
			// Every key held is locked out: a newcomer's failure goes
			// uncounted rather than cost someone else's lockout.
			return 0, false
		}
		e = limiterEntry{windowStart: now}
	}
	e.lastSeen = now
	if now.Before(e.lockedUntil) {
		s.m[key] = e
		return e.lockedUntil.Sub(now), true
	}
	if now.Sub(e.windowStart) >= l.window || now.Before(e.windowStart) {
		e.failures, e.windowStart = 0, now
	}
	e.failures++
	if e.failures >= l.maxFailures {
		e.failures, e.windowStart = 0, now
		e.lockedUntil = now.Add(l.lockout)
		s.m[key] = e
		return l.lockout, true
	}
	s.m[key] = e
	return 0, false
}

// Reset forgets key, e.g. after it authenticated successfully.
func (l *Limiter) Reset(key string) {
	s := l.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

// evict makes room in a full shard: first every entry that no longer
// matters (not locked out, window over), then the least recently seen
// entry that is not locked out. It never evicts a lockout: a flood of new
// keys must not lift one. Called with s.mu held.
func (l *Limiter) evict(s *limiterShard, now time.Time) {
	for k, e := range s.m {
		if !now.Before(e.lockedUntil) && now.Sub(e.windowStart) >= l.window {
			delete(s.m, k)
		}
	}
	for len(s.m) >= l.perShard {
		var oldest string
		var oldestT time.Time
		haveFree := false
		for k, e := range s.m {
			if !now.Before(e.lockedUntil) && (!haveFree || e.lastSeen.Before(oldestT)) {
				oldest, oldestT, haveFree = k, e.lastSeen, true
			}
		}
		if !haveFree {
			return
		}
		delete(s.m, oldest)
	}
}

// Len returns the number of keys tracked.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

package edge

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
	"unsafe"
)

// defaultJWTCacheSize bounds how many verified tokens a verifier remembers.
const defaultJWTCacheSize = 10240

// jwtCacheShards spreads the cache over independent locks so concurrent
// requests rarely contend.
const jwtCacheShards = 16

// jwtCache remembers verified tokens by the SHA-256 of the whole token, so
// a repeat presentation of the exact bytes skips signature verification.
// Entries are served only inside [notBefore, exp).
type jwtCache struct {
	perShard int
	shards   [jwtCacheShards]jwtCacheShard
}

// jwtCacheShard is one lock's worth of the cache.
type jwtCacheShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]jwtCacheEntry
}

// jwtCacheEntry is one verified token.
type jwtCacheEntry struct {
	claims    *Claims
	notBefore time.Time // earliest instant the token was valid, leeway applied
}

// newJWTCache returns a cache holding at most max entries (rounded down to
// a multiple of the shard count, and at least one per shard).
func newJWTCache(max int) *jwtCache {
	c := &jwtCache{perShard: max / jwtCacheShards}
	if c.perShard < 1 {
		c.perShard = 1
	}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]jwtCacheEntry)
	}
	return c
}

// cacheKey hashes a token; the hash, not the token, is kept in memory.
func cacheKey(token string) [sha256.Size]byte {
	return sum256(token)
}

// sum256 hashes s without copying it: the []byte conversion would escape
// into the assembly hash and allocate on every cached verification.
// Sum256 only reads its input, so viewing the string's bytes is safe.
func sum256(s string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// shard picks the shard for a key from the key's own (uniform) bytes.
func (c *jwtCache) shard(k [sha256.Size]byte) *jwtCacheShard {
	return &c.shards[binary.LittleEndian.Uint32(k[:4])%jwtCacheShards]
}

// get returns the cached claims for k if they are valid at now.
func (c *jwtCache) get(k [sha256.Size]byte, now time.Time) *Claims {
	if c == nil {
		return nil
	}
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok {
		return nil
	}
	if !now.Before(e.claims.Expires) || now.Before(e.notBefore) {
		// Stale entries are dropped lazily; a token from the future stays.
		if !now.Before(e.claims.Expires) {
			s.mu.Lock()
			delete(s.m, k)
			s.mu.Unlock()
		}
		return nil
	}
	return e.claims
}

// put remembers verified claims, evicting expired entries and then an
// arbitrary one when the shard is full.
func (c *jwtCache) put(k [sha256.Size]byte, claims *Claims, notBefore, now time.Time) {
	if c == nil || !now.Before(claims.Expires) {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.perShard {
		for key, e := range s.m {
			if !now.Before(e.claims.Expires) {
				delete(s.m, key)
			}
		}
		for key := range s.m {
			if len(s.m) < c.perShard {
				break
			}
			delete(s.m, key) // map order is random: a cheap random eviction
		}
	}
	s.m[k] = jwtCacheEntry{claims: claims, notBefore: notBefore}
}

// len returns the number of cached entries.
func (c *jwtCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

package edge

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := NewLimiter(3, time.Minute, 5*time.Minute, 100)
	now := testNow
	type step struct {
		op        string // "fail", "blocked" or "reset"
		at        time.Duration
		key       string
		wantRetry time.Duration
		wantBlock bool
	}
	steps := []step{
		{"blocked", 0, "a", 0, false},
		{"fail", 0, "a", 0, false},
		{"fail", 10 * time.Second, "a", 0, false},
		{"blocked", 10 * time.Second, "a", 0, false},
		{"fail", 20 * time.Second, "a", 5 * time.Minute, true},
		{"blocked", 20 * time.Second, "a", 5 * time.Minute, true},
		{"blocked", 80 * time.Second, "a", 4 * time.Minute, true},
		{"blocked", 80 * time.Second, "b", 0, false},
		{"fail", 80 * time.Second, "a", 4 * time.Minute, true},
		{"blocked", 20*time.Second + 5*time.Minute - time.Nanosecond, "a", time.Nanosecond, true},
		{"blocked", 20*time.Second + 5*time.Minute, "a", 0, false},
		// After the lockout the count starts over.
		{"fail", 6 * time.Minute, "a", 0, false},
		{"fail", 6 * time.Minute, "a", 0, false},
		// Failures spread beyond the window never lock.
		{"fail", 0, "b", 0, false},
		{"fail", 50 * time.Second, "b", 0, false},
		{"fail", 70 * time.Second, "b", 0, false},
		{"fail", 80 * time.Second, "b", 0, false},
		{"fail", 90 * time.Second, "b", 5 * time.Minute, true},
		{"reset", 90 * time.Second, "b", 0, false},
		{"blocked", 90 * time.Second, "b", 0, false},
	}
	for i, s := range steps {
		var retry time.Duration
		var blocked bool
		switch s.op {
		case "fail":
			retry, blocked = l.Fail(s.key, now.Add(s.at))
		case "blocked":
			retry, blocked = l.Blocked(s.key, now.Add(s.at))
		case "reset":
			l.Reset(s.key)
			continue
		}
		if retry != s.wantRetry || blocked != s.wantBlock {
			t.Errorf("step %d: %s(%q, +%v) = %v, %v; want %v, %v", i, s.op, s.key, s.at, retry, blocked, s.wantRetry, s.wantBlock)
		}
	}
}

func TestLimiterDefaults(t *testing.T) {
	l := NewLimiter(0, 0, 0, 0)
	if l.maxFailures != 10 || l.window != time.Minute || l.lockout != 5*time.Minute || l.perShard*len(l.shards) != 10000-10000%len(l.shards) {
		t.Errorf("NewLimiter(0,0,0,0) = %d, %v, %v, %d×%d; want defaults 10, 1m, 5m, 10000", l.maxFailures, l.window, l.lockout, l.perShard, len(l.shards))
	}
	for i := range 9 {
		if _, b := l.Fail("k", testNow); b {
			t.Fatalf("blocked after %d failures, want 10", i+1)
		}
	}
	if _, b := l.Fail("k", testNow); !b {
		t.Errorf("not blocked after 10 failures")
	}
}

func TestLimiterBounded(t *testing.T) {
	for _, maxKeys := range []int{1, 7, 1000} {
		l := NewLimiter(3, time.Minute, time.Hour, maxKeys)
		for i := range 100000 {
			l.Fail("10.0."+strconv.Itoa(i), testNow.Add(time.Duration(i)*time.Millisecond))
			if i%9973 == 0 && l.Len() > maxKeys {
				t.Fatalf("maxKeys %d: Len() = %d after %d keys", maxKeys, l.Len(), i+1)
			}
		}
		if n := l.Len(); n > maxKeys || n == 0 {
			t.Errorf("maxKeys %d: Len() = %d after 1e5 keys, want 1..%d", maxKeys, n, maxKeys)
		}
	}
}

func TestLimiterEvictionKeepsLockedKeys(t *testing.T) {
	l := NewLimiter(2, time.Minute, time.Hour, 64)
	// Lock out a handful of keys, then flood with single failures: the flood
	// must evict itself before it evicts a lockout.
	locked := []string{"attacker-1", "attacker-2", "attacker-3"}
	for _, k := range locked {
		l.Fail(k, testNow)
		if _, b := l.Fail(k, testNow); !b {
			t.Fatalf("%s not locked", k)
		}
	}
	for i := range 10000 {
		l.Fail("flood-"+strconv.Itoa(i), testNow.Add(time.Second))
	}
	for _, k := range locked {
		if _, b := l.Blocked(k, testNow.Add(2*time.Second)); !b {
			t.Errorf("%s lost its lockout to a flood of new keys", k)
		}
	}
	if l.Len() > 64 {
		t.Errorf("Len() = %d, want <= 64", l.Len())
	}
}

func TestLimiterBlockedNoAllocation(t *testing.T) {
	l := NewLimiter(3, time.Minute, time.Hour, 100)
	l.Fail("100.64.0.9", testNow)
	if n := testing.AllocsPerRun(100, func() { l.Blocked("100.64.0.9", testNow) }); n != 0 {
		t.Errorf("Blocked() allocated %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { l.Blocked("100.64.0.10", testNow) }); n != 0 {
		t.Errorf("Blocked(unknown) allocated %v times, want 0", n)
	}
}

func TestLimiterFullOfLockoutsKeepsThem(t *testing.T) {
	l := NewLimiter(1, time.Minute, time.Hour, 16)
	for i := range 16 {
		if _, b := l.Fail("locked-"+strconv.Itoa(i), testNow); !b {
			t.Fatalf("locked-%d not locked", i)
		}
	}
	for i := range 1000 {
		l.Fail("new-"+strconv.Itoa(i), testNow.Add(time.Second))
	}
	for i := range 16 {
		if _, b := l.Blocked("locked-"+strconv.Itoa(i), testNow.Add(2*time.Second)); !b {
			t.Errorf("locked-%d lost its lockout to new keys", i)
		}
	}
	if l.Len() > 16 {
		t.Errorf("Len() = %d, want <= 16", l.Len())
	}
}

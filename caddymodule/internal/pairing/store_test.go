package pairing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func seen(id, key string) Seen {
	return Seen{ID: id, NodeKey: "nodekey:" + key, Node: "node-" + id, FQDN: "node-" + id + ".tail.ts.net",
		Login: "alice@example.com", IP: netip.MustParseAddr("100.64.0.7")}
}

// newStorage returns Caddy's real file storage in a fresh directory.
func newStorage(t *testing.T) *certmagic.FileStorage {
	return &certmagic.FileStorage{Path: t.TempDir()}
}

// openStore opens gateway "home" in st, failing the test if it cannot be read.
func openStore(t *testing.T, st Storage, opts Options) *Store {
	t.Helper()
	s := Open(st, "home", opts)
	if err := s.Err(); err != nil {
		t.Fatalf("opening a store: %v", err)
	}
	return s
}

func TestPairingParseCode(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"7KQM-2XHD", "7KQM-2XHD", true},
		{"7kqm2xhd", "7KQM-2XHD", true},
		{" 7kqm - 2xhd ", "7KQM-2XHD", true},
		{"7KQM-2XH", "", false},
		{"7KQM-2XHDD", "", false},
		{"7KQ0-2XHD", "", false}, // 0 is not in the alphabet
		{"7KQI-2XHD", "", false}, // nor I
		{"7KQM-2XHÐ", "", false},
		{"", "", false},
		{strings.Repeat("A", 100), "", false},
	}
	for _, tt := range tests {
		got, ok := ParseCode(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseCode(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	for range 100 {
		c, err := newCode()
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := ParseCode(c); !ok || got != c {
			t.Fatalf("ParseCode(newCode() = %q) = %q, %v", c, got, ok)
		}
	}
}

func FuzzPairingParseCode(f *testing.F) {
	for _, s := range []string{"7KQM-2XHD", "7kqm2xhd", " 7kqm - 2xhd ", "7KQ0-2XHD", "", "ÐÐÐÐ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseCode(s)
		if !ok {
			return
		}
		if again, ok2 := ParseCode(c); !ok2 || again != c {
			t.Fatalf("ParseCode(%q) = %q, not a fixed point (%q, %v)", s, c, again, ok2)
		}
	})
}

func TestPairingCheckLifecycle(t *testing.T) {
	clk := newClock()
	st := newStorage(t)
	s := openStore(t, st, Options{Now: clk.now}) // empty storage is an empty store

	// A new device waits with a code.
	v, err := s.Check(seen("n1", "aaa"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Approved || v.Event != EventPending || v.Device.Reason != ReasonNew || v.Device.Status != StatusPending {
		t.Fatalf("first Check = %+v, want pending/new", v)
	}
	code := v.Device.Code
	if _, ok := ParseCode(code); !ok {
		t.Fatalf("code %q is not a code", code)
	}
	if got := v.Device; got.Node != "node-n1" || got.Login != "alice@example.com" || !slices.Equal(got.IPs, []string{"100.64.0.7"}) || !got.FirstSeen.Equal(clk.now()) {
		t.Errorf("recorded %+v", got)
	}

	// Asking again changes nothing and keeps the code.
	clk.add(time.Minute)
	v, _ = s.Check(seen("n1", "aaa"))
	if v.Approved || v.Event != EventNone || v.Device.Code != code {
		t.Fatalf("second Check = %+v, want the same pending device", v)
	}

	// A second device of the same user waits on its own.
	v2, _ := s.Check(seen("n2", "bbb"))
	if v2.Approved || v2.Device.Code == code {
		t.Fatalf("second device = %+v", v2)
	}

	// Approval by code (as typed) lets n1 pass, not n2.
	d, changed, err := s.Approve(strings.ToLower(strings.ReplaceAll(code, "-", "")), "ops@host")
	if err != nil || !changed || d.ID != "n1" || d.ApprovedBy != "ops@host" || d.Code != "" {
		t.Fatalf("Approve(code) = %+v, %v, %v", d, changed, err)
	}
	if v, _ := s.Check(seen("n1", "aaa")); !v.Approved {
		t.Fatalf("n1 after approval: %+v", v)
	}
	if v, _ := s.Check(seen("n2", "bbb")); v.Approved {
		t.Fatalf("n2 passed with n1's approval")
	}
	if _, changed, _ := s.Approve("n1", "ops"); changed {
		t.Errorf("approving an approved device changed it")
	}
	if _, _, err := s.Approve(code, "ops"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a used code still resolves: %v", err)
	}

	// A new node key is another machine: held again, with a new code.
	v, _ = s.Check(seen("n1", "ccc"))
	if v.Approved || !v.WasApproved || v.Device.Reason != ReasonNodeKeyChanged || v.Device.Code == "" || v.Device.Code == code {
		t.Fatalf("after key change = %+v", v)
	}
	// The old key does not get the approval back either.
	if v, _ := s.Check(seen("n1", "aaa")); v.Approved {
		t.Fatalf("the old key passes again")
	}
	if _, _, err := s.Approve("n1", "ops"); err != nil {
		t.Fatal(err)
	}

	// Revoke forgets the device; its next request waits with a new code.
	d, err = s.Revoke("n1")
	if err != nil || d.ID != "n1" {
		t.Fatalf("Revoke = %+v, %v", d, err)
	}
	if v, _ := s.Check(seen("n1", "aaa")); v.Approved || v.Device.Reason != ReasonNew {
		t.Fatalf("revoked device = %+v", v)
	}
	if _, err := s.Revoke("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(unknown) = %v", err)
	}

	// Everything above is in storage: another store sees the same devices,
	// one 0600 key each under the gateway's prefix.
	mine, _ := s.List()
	theirs, err := Open(&certmagic.FileStorage{Path: st.Path}, "home", Options{}).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != len(theirs) || len(mine) == 0 {
		t.Fatalf("in storage %d devices, in memory %d", len(theirs), len(mine))
	}
	for i := range mine {
		if mine[i].ID != theirs[i].ID || mine[i].Status != theirs[i].Status || mine[i].NodeKey != theirs[i].NodeKey || mine[i].Code != theirs[i].Code {
			t.Errorf("device %d: in storage %+v, in memory %+v", i, theirs[i], mine[i])
		}
		key := st.Filename("clawgate/pairing/home/devices/" + mine[i].ID + ".json")
		fi, err := os.Stat(key)
		if err != nil {
			t.Errorf("device %s has no key of its own: %v", mine[i].ID, err)
		} else if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
			t.Errorf("key mode %04o, want 0600", fi.Mode().Perm())
		}
	}
}

// TestPairingSteadyState: an approved device seen again with the same key and
// facts is answered without a change; its LastSeen catches up after a
// minute, and anything that differs takes the full path at once.
func TestPairingSteadyState(t *testing.T) {
	clk := newClock()
	s := openStore(t, newStorage(t), Options{Now: clk.now})
	v, _ := s.Check(seen("n1", "aaa"))
	if _, _, err := s.Approve(v.Device.Code, "ops"); err != nil {
		t.Fatal(err)
	}
	v, _ = s.Check(seen("n1", "aaa"))
	first := v.Device.LastSeen
	if !v.Approved || !first.Equal(clk.now()) {
		t.Fatalf("after approval: %+v", v)
	}

	clk.add(30 * time.Second)
	v, _ = s.Check(seen("n1", "aaa"))
	if !v.Approved || v.Event != EventNone || !v.Device.LastSeen.Equal(first) {
		t.Fatalf("30 s later: approved %v, event %v, last seen %v; want approved, no event, %v", v.Approved, v.Event, v.Device.LastSeen, first)
	}
	clk.add(30 * time.Second)
	if v, _ = s.Check(seen("n1", "aaa")); !v.Device.LastSeen.Equal(clk.now()) {
		t.Errorf("a minute later LastSeen = %v, want %v", v.Device.LastSeen, clk.now())
	}

	moved := seen("n1", "aaa")
	moved.IP = netip.MustParseAddr("100.64.0.9")
	if v, _ = s.Check(moved); !v.Approved || !slices.Equal(v.Device.IPs, []string{"100.64.0.7", "100.64.0.9"}) {
		t.Errorf("a new address: approved %v, IPs %q", v.Approved, v.Device.IPs)
	}
	tagged := moved
	tagged.Tags = []string{"tag:new"}
	if v, _ = s.Check(tagged); !slices.Equal(v.Device.Tags, []string{"tag:new"}) {
		t.Errorf("new tags not recorded: %q", v.Device.Tags)
	}
	if v, _ = s.Check(seen("n1", "bbb")); v.Approved || v.Event != EventPending {
		t.Errorf("a new node key: approved %v, event %v; want pending", v.Approved, v.Event)
	}
	if _, err := s.Revoke("n1"); err != nil {
		t.Fatal(err)
	}
	if v, _ = s.Check(seen("n1", "bbb")); v.Approved {
		t.Errorf("a revoked device passed")
	}
}

func TestPairingAutoApprove(t *testing.T) {
	s := openStore(t, newStorage(t), Options{Now: newClock().now})
	bot := seen("bot", "k1")
	bot.Tags, bot.AutoApprove = []string{"tag:trusted"}, "tag:trusted"
	v, _ := s.Check(bot)
	if !v.Approved || v.Event != EventAutoApproved || !v.Device.Auto || v.Device.ApprovedBy != "auto_approve tag:trusted" {
		t.Fatalf("tagged device = %+v", v)
	}
	// The same node without the tag (the rule no longer matches) is held.
	bot.Tags, bot.AutoApprove = nil, ""
	v, _ = s.Check(bot)
	if v.Approved || !v.WasApproved || v.Device.Reason != ReasonAutoLapsed {
		t.Fatalf("untagged again = %+v", v)
	}
	// A pending device that gains the tag passes.
	bot.Tags, bot.AutoApprove = []string{"tag:trusted"}, "tag:trusted"
	if v, _ := s.Check(bot); !v.Approved {
		t.Fatalf("retagged = %+v", v)
	}
	// A manual approval does not lapse with the tag.
	if _, changed, err := s.Approve("bot", "ops"); err != nil || !changed {
		t.Fatalf("Approve = %v, %v", changed, err)
	}
	bot.Tags, bot.AutoApprove = nil, ""
	if v, _ := s.Check(bot); !v.Approved {
		t.Fatalf("manually approved device lost its approval with its tag")
	}
}

func TestPairingMaxPending(t *testing.T) {
	clk := newClock()
	s := openStore(t, newStorage(t), Options{MaxPending: 3, Now: clk.now})
	for i := range 5 {
		clk.add(time.Second)
		if _, err := s.Check(seen(fmt.Sprintf("n%d", i), "k")); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := s.List()
	var ids []string
	for _, d := range list {
		ids = append(ids, d.ID)
	}
	if want := []string{"n2", "n3", "n4"}; !slices.Equal(ids, want) {
		t.Errorf("kept %v, want %v", ids, want)
	}
}

// faultyStorage is Caddy's real file storage that fails on demand, as a
// storage module does while its backend is down.
type faultyStorage struct {
	*certmagic.FileStorage
	mu   sync.Mutex
	fail error
}

func (f *faultyStorage) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func (f *faultyStorage) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

func (f *faultyStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.FileStorage.Load(ctx, key)
}

func (f *faultyStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.FileStorage.List(ctx, prefix, recursive)
}

func (f *faultyStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.FileStorage.Store(ctx, key, value)
}

func (f *faultyStorage) Lock(ctx context.Context, name string) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.FileStorage.Lock(ctx, name)
}

// TestPairingRecordFailsClosed: a device whose record cannot be parsed is
// held, never written over, and does not hold the other devices; revoking
// it or fixing the record lets it pair again.
func TestPairingRecordFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(key string, data []byte) error
		errHas string
	}{
		{"truncated", func(k string, d []byte) error { return os.WriteFile(k, d[:len(d)/2], 0o600) }, "parsing"},
		{"truncated to nothing", func(k string, d []byte) error { return os.WriteFile(k, nil, 0o600) }, "empty record"},
		{"garbage", func(k string, d []byte) error { return os.WriteFile(k, []byte("\x00\xffnot json at all"), 0o600) }, "parsing"},
		{"other JSON", func(k string, d []byte) error { return os.WriteFile(k, []byte(`{"hello": "world"}`), 0o600) }, "unknown field"},
		{"two documents", func(k string, d []byte) error { return os.WriteFile(k, append(d, d...), 0o600) }, "after the end"},
		{"future version", func(k string, d []byte) error {
			return os.WriteFile(k, []byte(strings.Replace(string(d), `"version": 1`, `"version": 2`, 1)), 0o600)
		}, "version 2"},
		{"another gateway's record", func(k string, d []byte) error {
			return os.WriteFile(k, []byte(strings.Replace(string(d), `"gateway": "home"`, `"gateway": "work"`, 1)), 0o600)
		}, `gateway "work"`},
		{"another device's record", func(k string, d []byte) error {
			return os.WriteFile(k, []byte(strings.Replace(string(d), `"id": "n1"`, `"id": "n2"`, 1)), 0o600)
		}, `device "n2", not "n1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStorage(t)
			s := openStore(t, st, Options{})
			for _, id := range []string{"n1", "n2"} {
				v, _ := s.Check(seen(id, "aaa"))
				if _, _, err := s.Approve(v.Device.Code, "ops"); err != nil {
					t.Fatal(err)
				}
			}
			key := st.Filename("clawgate/pairing/home/devices/n1.json")
			data, err := os.ReadFile(key)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.break_(key, data); err != nil {
				t.Fatal(err)
			}
			broken, _ := os.ReadFile(key)

			s = openStore(t, st, Options{})
			if err := s.Broken()["n1"]; err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Broken()[n1] = %v, want an error with %q", err, tt.errHas)
			}
			if v, err := s.Check(seen("n1", "aaa")); !errors.Is(err, ErrUnavailable) || v.Approved || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("Check(n1) = %+v, %v; want held with ErrUnavailable naming %q", v, err, tt.errHas)
			}
			if v, err := s.Check(seen("n1", "other")); err == nil || v.Approved {
				t.Errorf("Check(n1, new key) = %+v, %v; want held", v, err)
			}
			if _, _, err := s.Approve("n1", "ops"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Approve(n1) = %v, want ErrUnavailable", err)
			}
			if got, _ := os.ReadFile(key); !bytes.Equal(got, broken) {
				t.Errorf("the broken record was written over")
			}
			if v, err := s.Check(seen("n2", "aaa")); err != nil || !v.Approved {
				t.Errorf("Check(n2) = %+v, %v; another device's broken record held it", v, err)
			}
			// Revoking clears it; the device then waits like a new one.
			if _, err := s.Revoke("n1"); err != nil {
				t.Fatalf("Revoke(n1) = %v", err)
			}
			if v, err := s.Check(seen("n1", "aaa")); err != nil || v.Approved || v.Device.Reason != ReasonNew {
				t.Errorf("after revoking: %+v, %v; want pending as new", v, err)
			}
		})
	}
}

// TestPairingStorageUnreadable: while storage cannot be read, new and
// changed devices are held at once, approved devices pass on the last good
// read for StaleFor and are then held (Refresh lists them once, for their
// connections to close), and a read that works again restores them.
func TestPairingStorageUnreadable(t *testing.T) {
	clk := newClock()
	st := &faultyStorage{FileStorage: newStorage(t)}
	s := openStore(t, st, Options{Now: clk.now, StaleFor: 30 * time.Second})
	v, _ := s.Check(seen("n1", "aaa"))
	if _, _, err := s.Approve(v.Device.Code, "ops"); err != nil {
		t.Fatal(err)
	}
	pendingCode := func() string { v, _ := s.Check(seen("n2", "bbb")); return v.Device.Code }()
	down := errors.New("connection refused")
	st.setFail(down)

	ctx := context.Background()
	res := s.Refresh(ctx, true)
	if !errors.Is(res.Err, ErrUnavailable) || !errors.Is(res.Err, down) || !res.Failed || res.Expired || len(res.Lapsed) != 0 {
		t.Fatalf("first failed Refresh = %+v", res)
	}
	if v, err := s.Check(seen("n1", "aaa")); err != nil || !v.Approved {
		t.Errorf("approved device within StaleFor: %+v, %v", v, err)
	}
	for name, sn := range map[string]Seen{"a new device": seen("n3", "ccc"), "a new node key": seen("n1", "zzz")} {
		if v, err := s.Check(sn); !errors.Is(err, ErrUnavailable) || v.Approved {
			t.Errorf("%s while storage is down: %+v, %v; want held", name, v, err)
		}
	}
	if _, _, err := s.Approve(pendingCode, "ops"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Approve while storage is down = %v", err)
	}
	if _, err := s.Revoke("n1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Revoke while storage is down = %v", err)
	}

	clk.add(31 * time.Second)
	res = s.Refresh(ctx, false)
	if !res.Expired || res.Failed || len(res.Lapsed) != 1 || res.Lapsed[0].ID != "n1" {
		t.Fatalf("Refresh past StaleFor = %+v, want n1 lapsed once", res)
	}
	if res = s.Refresh(ctx, false); res.Expired || len(res.Lapsed) != 0 {
		t.Errorf("the next failed Refresh = %+v, want nothing new", res)
	}
	if v, err := s.Check(seen("n1", "aaa")); !errors.Is(err, ErrUnavailable) || v.Approved {
		t.Errorf("approved device past StaleFor: %+v, %v; want held", v, err)
	}
	if _, err := s.List(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("List past StaleFor = %v", err)
	}

	st.setFail(nil)
	res = s.Refresh(ctx, false)
	if !res.Read || !res.Recovered || res.Err != nil || len(res.Lapsed) != 0 {
		t.Fatalf("Refresh after storage is back = %+v", res)
	}
	if v, err := s.Check(seen("n1", "aaa")); err != nil || !v.Approved {
		t.Errorf("after recovery: %+v, %v", v, err)
	}

	// A store whose first read fails holds everything and recovers on a
	// request once the retry interval has passed.
	st.setFail(down)
	cold := Open(st, "home", Options{Now: clk.now})
	if err := cold.Err(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Err() of a store never read = %v", err)
	}
	if v, err := cold.Check(seen("n1", "aaa")); err == nil || v.Approved {
		t.Errorf("Check on a store never read = %+v, %v", v, err)
	}
	st.setFail(nil)
	clk.add(retryEvery)
	if v, err := cold.Check(seen("n1", "aaa")); err != nil || !v.Approved {
		t.Errorf("after the retry interval: %+v, %v", v, err)
	}
}

// TestPairingTwoStoresShareStorage: two stores on one real file storage
// directory, as two Caddy instances sharing the `storage` option: a code one
// shows is approved through the other, and each sees the other's approvals
// and revocations on its next Refresh; a Refresh with nothing changed reads
// one key.
func TestPairingTwoStoresShareStorage(t *testing.T) {
	dir := t.TempDir()
	a := openStore(t, &certmagic.FileStorage{Path: dir}, Options{})
	b := openStore(t, &certmagic.FileStorage{Path: dir}, Options{})
	ctx := context.Background()

	v, err := a.Check(seen("n1", "aaa"))
	if err != nil || v.Event != EventPending {
		t.Fatalf("Check on a = %+v, %v", v, err)
	}
	// b has not read since; the code still resolves.
	d, changed, err := b.Approve(v.Device.Code, "ops@b")
	if err != nil || !changed || d.ID != "n1" {
		t.Fatalf("b.Approve(code shown by a) = %+v, %v, %v", d, changed, err)
	}
	if v, _ := a.Check(seen("n1", "aaa")); v.Approved {
		t.Fatalf("a approved n1 before reading storage again")
	}
	if res := a.Refresh(ctx, false); !res.Read || len(res.Lapsed) != 0 {
		t.Fatalf("a.Refresh after b's approval = %+v", res)
	}
	if v, _ := a.Check(seen("n1", "aaa")); !v.Approved || v.Device.ApprovedBy != "ops@b" {
		t.Fatalf("a after reading b's approval: %+v", v)
	}
	if res := a.Refresh(ctx, false); res.Read {
		t.Errorf("a.Refresh with nothing changed read the devices again")
	}

	// A device a has never seen, approved through b, passes on a at once:
	// a reads its record before recording it as new.
	v, _ = b.Check(seen("n2", "bbb"))
	if _, _, err := b.Approve(v.Device.Code, "ops@b"); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Check(seen("n2", "bbb")); err != nil || !v.Approved {
		t.Errorf("a.Check(n2 approved on b) = %+v, %v", v, err)
	}

	// A revocation on b lapses the approval on a at its next Refresh.
	if _, err := b.Revoke("n1"); err != nil {
		t.Fatal(err)
	}
	res := a.Refresh(ctx, false)
	if !res.Read || len(res.Lapsed) != 1 || res.Lapsed[0].ID != "n1" {
		t.Fatalf("a.Refresh after b's revocation = %+v, want n1 lapsed", res)
	}
	if v, _ := a.Check(seen("n1", "aaa")); v.Approved || v.Device.Reason != ReasonNew {
		t.Errorf("a after b's revocation: %+v", v)
	}
	// A new node key recorded on a lapses b's approval of n2.
	if v, _ := a.Check(seen("n2", "new")); v.Approved || !v.WasApproved {
		t.Fatalf("a.Check(n2, new key) = %+v", v)
	}
	if res := b.Refresh(ctx, false); len(res.Lapsed) != 1 || res.Lapsed[0].ID != "n2" {
		t.Errorf("b.Refresh after a's node key change = %+v, want n2 lapsed", res)
	}
	// A code replaced on a (the new key's) no longer approves through b.
	old, _ := b.Find("n2")
	if old.Code == "" {
		t.Fatalf("b does not show n2 pending: %+v", old)
	}
	if _, _, err := b.Approve(old.Code, "ops"); err != nil {
		t.Fatalf("b.Approve(current code) = %v", err)
	}
}

// TestPairingConcurrentApprovals approves many devices at once through two
// stores on one file storage directory while new devices arrive on both,
// and checks that storage holds every change.
func TestPairingConcurrentApprovals(t *testing.T) {
	dir := t.TempDir()
	const n = 40
	first := openStore(t, &certmagic.FileStorage{Path: dir}, Options{MaxPending: 1000})
	codes := make([]string, n)
	for i := range n {
		v, err := first.Check(seen(fmt.Sprintf("dev%02d", i), "k"))
		if err != nil {
			t.Fatal(err)
		}
		codes[i] = v.Device.Code
	}
	second := openStore(t, &certmagic.FileStorage{Path: dir}, Options{MaxPending: 1000})
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		s := first
		if i%2 == 1 {
			s = second
		}
		wg.Go(func() {
			if _, _, err := s.Approve(codes[i], fmt.Sprintf("op%d", i)); err != nil {
				errs <- fmt.Errorf("approve %s: %w", codes[i], err)
			}
		})
		wg.Go(func() {
			if _, err := s.Check(seen(fmt.Sprintf("new%02d", i), "k")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := Open(&certmagic.FileStorage{Path: dir}, "home", Options{}).List()
	if err != nil {
		t.Fatal(err)
	}
	approved, pending := 0, 0
	for _, d := range list {
		switch {
		case strings.HasPrefix(d.ID, "dev") && d.Status == StatusApproved:
			approved++
		case strings.HasPrefix(d.ID, "new") && d.Status == StatusPending:
			pending++
		}
	}
	if approved != n || pending != n {
		t.Errorf("in storage: %d approved (want %d), %d new pending (want %d)", approved, n, pending, n)
	}
}

// copyLegacy puts the approval file an older clawgate wrote in dir, 0600.
func copyLegacy(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "pairing-home.json"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pairing-home.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPairingMigrate moves a real approval file of an older clawgate into
// storage: every device keeps its state, the file is renamed with a note,
// and running it again changes nothing storage holds.
func TestPairingMigrate(t *testing.T) {
	st := newStorage(t)
	s := openStore(t, st, Options{})
	dir := t.TempDir()
	file := copyLegacy(t, dir)

	m, err := s.Migrate(file)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil || m.Moved != 3 || m.Kept != 0 || m.RenamedTo != file+MigratedSuffix {
		t.Fatalf("Migrate = %+v", m)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the approval file is still in place: %v", err)
	}
	note, err := os.ReadFile(m.Note)
	if err != nil || !strings.Contains(string(note), "clawgate/pairing/home/devices/") || !strings.Contains(string(note), "3 device(s) were moved") {
		t.Errorf("note %s: %v\n%s", m.Note, err, note)
	}
	want := map[string]string{"nXvT2fN4CNTRL": "approved", "nK7pQ2rS3CNTRL": "pending", "nB0tT4gG3CNTRL": "approved"}
	list, _ := s.List()
	if len(list) != len(want) {
		t.Fatalf("after migrating: %d devices, want %d", len(list), len(want))
	}
	for _, d := range list {
		if string(d.Status) != want[d.ID] {
			t.Errorf("device %s is %s, want %s", d.ID, d.Status, want[d.ID])
		}
	}
	laptop := Seen{ID: "nXvT2fN4CNTRL", NodeKey: "nodekey:8c1d0e2f", Node: "alice-laptop", FQDN: "alice-laptop.tail0123.ts.net", OS: "linux", Login: "alice@example.com", IP: netip.MustParseAddr("100.64.0.1")}
	if v, err := s.Check(laptop); err != nil || !v.Approved || v.Device.ApprovedBy != "alice@laptop" {
		t.Errorf("the migrated laptop: %+v, %v", v, err)
	}
	if phone, err := s.Find("ELAR-3BAK"); err != nil || phone.ID != "nK7pQ2rS3CNTRL" {
		t.Errorf("the migrated pending code: %+v, %v", phone, err)
	}

	// Again: nothing to do.
	if m, err := s.Migrate(file); m != nil || err != nil {
		t.Errorf("Migrate with no file = %+v, %v", m, err)
	}
	// The file back (a restored backup, or a start that stopped before the
	// rename): storage's newer records stay, the file moves aside again.
	if _, err := s.Revoke("nXvT2fN4CNTRL"); err != nil {
		t.Fatal(err)
	}
	copyLegacy(t, dir)
	m, err = s.Migrate(file)
	if err != nil || m.Moved != 1 || m.Kept != 2 || m.RenamedTo != file+MigratedSuffix+".2" {
		t.Fatalf("Migrate again = %+v, %v", m, err)
	}
	if d, err := s.Find("nB0tT4gG3CNTRL"); err != nil || d.Status != StatusApproved || !d.Auto {
		t.Errorf("a kept device changed: %+v, %v", d, err)
	}

	// A file that cannot be trusted or parsed is left alone and moves
	// nothing.
	bad := []struct {
		name   string
		write  func(path string) error
		errHas string
	}{
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("{not json"), 0o600) }, "parsing"},
		{"future version", func(p string) error { return os.WriteFile(p, []byte(`{"version":2,"devices":[]}`), 0o600) }, "version 2"},
	}
	if runtime.GOOS != "windows" {
		bad = append(bad, struct {
			name   string
			write  func(path string) error
			errHas string
		}{"writable by others", func(p string) error {
			data, _ := os.ReadFile(filepath.Join("testdata", "pairing-home.json"))
			if err := os.WriteFile(p, data, 0o600); err != nil {
				return err
			}
			return os.Chmod(p, 0o666)
		}, "writable by other users"})
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			st := newStorage(t)
			s := openStore(t, st, Options{})
			path := filepath.Join(t.TempDir(), "pairing-home.json")
			if err := tt.write(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			m, err := s.Migrate(path)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Migrate = %+v, %v; want an error naming the file and %q", m, err, tt.errHas)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Errorf("the file was changed")
			}
			if list, _ := s.List(); len(list) != 0 {
				t.Errorf("moved %d devices from a bad file", len(list))
			}
		})
	}
}

// TestPairingKeys: gateway names and node IDs stay inside their prefix
// whatever they hold, and map back to themselves.
func TestPairingKeys(t *testing.T) {
	for _, name := range []string{"home", "nXvT2fN4CNTRL", "a_b-c", "../x", "a/b", ".", "..", "~x", "é", "a b", "12345"} {
		part := keyPart(name)
		if strings.ContainsAny(part, "/\\.") || part == "" {
			t.Errorf("keyPart(%q) = %q: not one plain segment", name, part)
		}
		if back, ok := fromKeyPart(part); !ok || back != name {
			t.Errorf("fromKeyPart(keyPart(%q) = %q) = %q, %v", name, part, back, ok)
		}
		if id, ok := idFromKey(deviceKey("../gw", name)); !ok || id != name {
			t.Errorf("idFromKey(deviceKey(%q)) = %q, %v", name, id, ok)
		}
		if !strings.HasPrefix(deviceKey(name, "n1"), "clawgate/pairing/") || strings.Count(deviceKey(name, "n1"), "/") != 4 {
			t.Errorf("deviceKey(%q, n1) = %q", name, deviceKey(name, "n1"))
		}
	}
	for _, part := range []string{"", "~", "~!!", "a.b", "~aG9tZQ"} { // the last is "home" spelled the other way
		if got, ok := fromKeyPart(part); ok {
			t.Errorf("fromKeyPart(%q) = %q, want refused", part, got)
		}
	}
}
func TestPairingDecode(t *testing.T) {
	valid := `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"pending","code":"7KQM-2XHD"},{"id":"n2","node_key":"nodekey:cd","status":"approved","ips":["100.64.0.2"]}]}`
	tests := []struct {
		name, in string
		wantN    int
		errHas   string
	}{
		{"valid", valid, 2, ""},
		{"empty list", `{"version":1,"devices":[]}`, 0, ""},
		{"no version", `{"devices":[]}`, 0, "version 0"},
		{"unknown status", `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"ok"}]}`, 0, "unknown status"},
		{"pending without code", `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"pending"}]}`, 0, "without a valid code"},
		{"approved with code", `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"approved","code":"7KQM-2XHD"}]}`, 0, "still has a pairing code"},
		{"no node key", `{"version":1,"devices":[{"id":"n1","node_key":"","status":"approved"}]}`, 0, "not a node key"},
		{"no id", `{"version":1,"devices":[{"id":"","node_key":"nodekey:ab","status":"approved"}]}`, 0, "id is empty"},
		{"duplicate id", `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"approved"},{"id":"n1","node_key":"nodekey:ab","status":"approved"}]}`, 0, "listed twice"},
		{"duplicate code", `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"pending","code":"7KQM-2XHD"},{"id":"n2","node_key":"nodekey:ab","status":"pending","code":"7KQM-2XHD"}]}`, 0, "used twice"},
		{"bad ip", `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"approved","ips":["nope"]}]}`, 0, "ips"},
		{"control character", `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"approved","node":"a\u001bb"}]}`, 0, "control character"},
		{"pending and auto", `{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"pending","code":"7KQM-2XHD","auto":true}]}`, 0, "auto-approved"},
		{"truncated", valid[:len(valid)/2], 0, "parsing"},
		{"trailing", valid + "{}", 0, "after the end"},
		{"whitespace", "  \n", 0, "empty file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeFile([]byte(tt.in))
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Decode = %v, want an error with %q", err, tt.errHas)
				}
				return
			}
			if err != nil || len(got) != tt.wantN {
				t.Fatalf("Decode = %d devices, %v; want %d", len(got), err, tt.wantN)
			}
		})
	}
}

func FuzzPairingDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"pending","code":"7KQM-2XHD"},{"id":"n2","node_key":"nodekey:cd","status":"approved","ips":["100.64.0.2"]}]}`))
	f.Add([]byte(`{"version":1,"devices":[]}`))
	f.Add([]byte(`{"version":1,"devices":[{"id":"n1","node_key":"nodekey:ab","status":"approved","first_seen":"2026-03-01T12:00:00Z","tags":["tag:x"]}]}`))
	f.Add([]byte(`{"devices":[]}`))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		devices, err := decodeFile(data)
		if err != nil {
			return
		}
		// Every device a file holds migrates to a record that decodes to
		// the same device.
		for _, d := range devices {
			enc, err := encodeRecord("home", d)
			if err != nil {
				t.Fatalf("encodeRecord after decodeFile: %v", err)
			}
			again, err := decodeRecord(enc, "home", d.ID)
			if err != nil {
				t.Fatalf("decodeRecord(encodeRecord(%+v)): %v\n%s", d, err, enc)
			}
			if again.ID != d.ID || again.NodeKey != d.NodeKey || again.Status != d.Status || again.Code != d.Code || again.Auto != d.Auto {
				t.Fatalf("round trip: %+v, want %+v", again, d)
			}
		}
	})
}

func TestPairingDecodeRecord(t *testing.T) {
	valid := `{"version":1,"gateway":"home","device":{"id":"n1","node_key":"nodekey:ab","status":"pending","code":"7KQM-2XHD"}}`
	tests := []struct {
		name, in, id, errHas string
	}{
		{"valid", valid, "n1", ""},
		{"approved", `{"version":1,"gateway":"home","device":{"id":"n1","node_key":"nodekey:ab","status":"approved","ips":["100.64.0.2"]}}`, "n1", ""},
		{"another key's device", valid, "n2", `device "n1", not "n2"`},
		{"another gateway", strings.Replace(valid, `"home"`, `"work"`, 1), "n1", `gateway "work"`},
		{"no version", strings.Replace(valid, `"version":1,`, "", 1), "n1", "version 0"},
		{"unknown field", strings.Replace(valid, `"version":1,`, `"version":1,"approve_all":true,`, 1), "n1", "unknown field"},
		{"invalid device", strings.Replace(valid, `"status":"pending"`, `"status":"ok"`, 1), "n1", "unknown status"},
		{"truncated", valid[:len(valid)/2], "n1", "parsing"},
		{"trailing", valid + "{}", "n1", "after the end"},
		{"empty", " \n", "n1", "empty record"},
		{"oversized", valid + strings.Repeat(" ", maxRecordSize), "n1", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decodeRecord([]byte(tt.in), "home", tt.id)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("decodeRecord = %+v, %v; want an error with %q", d, err, tt.errHas)
				}
				return
			}
			if err != nil || d.ID != tt.id {
				t.Fatalf("decodeRecord = %+v, %v", d, err)
			}
		})
	}
}

func FuzzPairingDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"version":1,"gateway":"home","device":{"id":"n1","node_key":"nodekey:ab","status":"pending","code":"7KQM-2XHD"}}`))
	f.Add([]byte(`{"version":1,"gateway":"home","device":{"id":"n1","node_key":"nodekey:ab","status":"approved","auto":true,"tags":["tag:x"]}}`))
	f.Add([]byte(`{"version":1,"gateway":"work","device":{}}`))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := decodeRecord(data, "home", "n1")
		if err != nil {
			return
		}
		enc, err := encodeRecord("home", d)
		if err != nil {
			t.Fatalf("encodeRecord after decodeRecord: %v", err)
		}
		if _, err := decodeRecord(enc, "home", "n1"); err != nil {
			t.Fatalf("decodeRecord(encodeRecord(decodeRecord(x))): %v\n%s", err, enc)
		}
	})
}

func TestPairingWriteHeld(t *testing.T) {
	held := Held{Status: 403, Type: "clawgate_pairing_pending", Message: "waiting <for> approval", Code: "7KQM-2XHD", Device: "n1", Node: "alice-phone", Gateway: "home"}
	tests := []struct {
		name     string
		h        http.Header
		wantType string
		wantHas  []string
	}{
		{"api client", http.Header{"Accept": {"application/json"}}, "application/json", []string{`"type":"clawgate_pairing_pending"`, `"code":"7KQM-2XHD"`, `"device":"n1"`}},
		{"browser", http.Header{"Accept": {"text/html,application/xhtml+xml"}}, "text/html; charset=utf-8", []string{"7KQM-2XHD", "caddy clawgate devices approve 7KQM-2XHD", "waiting &lt;for&gt; approval", `http-equiv="refresh"`}},
		{"websocket from a browser", http.Header{"Accept": {"text/html"}, "Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, "application/json", []string{`"type":"clawgate_pairing_pending"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header = tt.h
			w := httptest.NewRecorder()
			WriteHeld(w, r, held)
			if w.Code != 403 || w.Header().Get("Content-Type") != tt.wantType || w.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("got %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"))
			}
			for _, s := range tt.wantHas {
				if !strings.Contains(w.Body.String(), s) {
					t.Errorf("body lacks %q:\n%s", s, w.Body.String())
				}
			}
		})
	}
}

// BenchmarkPairingRefresh is one poll of Caddy's file storage: with nothing
// changed (the generation key alone is read) against a full read of every
// device, for a few store sizes.
func BenchmarkPairingRefresh(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		st := &certmagic.FileStorage{Path: b.TempDir()}
		s := Open(st, "home", Options{MaxPending: 2 * n})
		for i := range n {
			if _, err := s.Check(seen(fmt.Sprintf("n%04d", i), "k")); err != nil {
				b.Fatal(err)
			}
		}
		ctx := context.Background()
		for _, force := range []bool{false, true} {
			name := fmt.Sprintf("devices=%d/unchanged", n)
			if force {
				name = fmt.Sprintf("devices=%d/full", n)
			}
			b.Run(name, func(b *testing.B) {
				s.Refresh(ctx, true)
				b.ReportAllocs()
				for b.Loop() {
					if res := s.Refresh(ctx, force); res.Err != nil || res.Read != force {
						b.Fatalf("Refresh = %+v", res)
					}
				}
			})
		}
	}
}

// BenchmarkPairingCheckSteady is the request path of a paired device, which
// never reaches storage.
func BenchmarkPairingCheckSteady(b *testing.B) {
	s := Open(&certmagic.FileStorage{Path: b.TempDir()}, "home", Options{})
	v, _ := s.Check(seen("n1", "k"))
	if _, _, err := s.Approve(v.Device.Code, "ops"); err != nil {
		b.Fatal(err)
	}
	sn := seen("n1", "k")
	s.Check(sn)
	b.ReportAllocs()
	for b.Loop() {
		if v, err := s.Check(sn); err != nil || !v.Approved {
			b.Fatal(v, err)
		}
	}
}

// TestPairingConcurrentChecksAndReads runs requests of one approved device
// (some from new addresses, which update its record in memory) while the
// store is read again and the device approved again, for the race detector,
// and checks that the device passes throughout.
func TestPairingConcurrentChecksAndReads(t *testing.T) {
	s := openStore(t, newStorage(t), Options{})
	v, _ := s.Check(seen("n1", "k"))
	if _, _, err := s.Approve(v.Device.Code, "ops"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 100 {
		wg.Go(func() {
			sn := seen("n1", "k")
			sn.IP = netip.AddrFrom4([4]byte{100, 64, 1, byte(i % 8)})
			if v, err := s.Check(sn); err != nil || !v.Approved {
				errs <- fmt.Errorf("Check = %+v, %v", v, err)
			}
		})
		switch i % 4 {
		case 0:
			wg.Go(func() { s.Refresh(context.Background(), true) })
		case 1:
			wg.Go(func() {
				if d, changed, err := s.Approve("n1", "ops"); err != nil || changed || d.Status != StatusApproved {
					errs <- fmt.Errorf("Approve = %+v, %v, %v", d, changed, err)
				}
			})
		case 2:
			wg.Go(func() {
				if _, err := s.List(); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

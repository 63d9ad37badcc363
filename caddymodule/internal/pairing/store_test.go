package pairing

import (
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

func storePath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "clawgate", "pairing-home.json")
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
	path := storePath(t)
	s, err := Open(path, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("a missing file is an empty store, got %v", err)
	}

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

	// Everything above is on disk: a fresh reader sees the same devices.
	mine, _ := s.List()
	theirs, err := New(path, Options{}).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != len(theirs) {
		t.Fatalf("on disk %d devices, in memory %d", len(theirs), len(mine))
	}
	for i := range mine {
		if mine[i].ID != theirs[i].ID || mine[i].Status != theirs[i].Status || mine[i].NodeKey != theirs[i].NodeKey || mine[i].Code != theirs[i].Code {
			t.Errorf("device %d: on disk %+v, in memory %+v", i, theirs[i], mine[i])
		}
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("store mode %04o, want 0600", fi.Mode().Perm())
		}
	}
}

// TestPairingSteadyState: an approved device seen again with the same key and
// facts is answered without a change; its LastSeen catches up after a
// minute, and anything that differs takes the full path at once.
func TestPairingSteadyState(t *testing.T) {
	clk := newClock()
	s, err := Open(storePath(t), Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
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
	s := New(storePath(t), Options{Now: newClock().now})
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
	s := New(storePath(t), Options{MaxPending: 3, Now: clk.now})
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

// TestPairingStorageFailsClosed: a store that cannot be read approves nothing,
// never writes over the file, and recovers once the file is fixed.
func TestPairingStorageFailsClosed(t *testing.T) {
	good := func(t *testing.T, path string) []byte {
		s := New(path, Options{})
		v, _ := s.Check(seen("n1", "aaa"))
		if _, _, err := s.Approve(v.Device.Code, "ops"); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name   string
		break_ func(path string, data []byte) error
		errHas string
	}{
		{"truncated", func(p string, d []byte) error { return os.WriteFile(p, d[:len(d)/2], 0o600) }, "parsing"},
		{"truncated to nothing", func(p string, d []byte) error { return os.WriteFile(p, nil, 0o600) }, "empty file"},
		{"garbage", func(p string, d []byte) error { return os.WriteFile(p, []byte("\x00\xffnot json at all"), 0o600) }, "parsing"},
		{"other JSON", func(p string, d []byte) error { return os.WriteFile(p, []byte(`{"hello": "world"}`), 0o600) }, "unknown field"},
		{"two documents", func(p string, d []byte) error { return os.WriteFile(p, append(d, d...), 0o600) }, "after the end"},
		{"future version", func(p string, d []byte) error {
			return os.WriteFile(p, []byte(strings.Replace(string(d), `"version": 1`, `"version": 2`, 1)), 0o600)
		}, "version 2"},
		{"a directory", func(p string, d []byte) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Mkdir(p, 0o700)
		}, "not a regular file"},
	}
	if runtime.GOOS != "windows" {
		tests = append(tests, struct {
			name   string
			break_ func(path string, data []byte) error
			errHas string
		}{"writable by others", func(p string, d []byte) error { return os.Chmod(p, 0o666) }, "writable by other users"})
		if os.Geteuid() != 0 {
			tests = append(tests, struct {
				name   string
				break_ func(path string, data []byte) error
				errHas string
			}{"unreadable", func(p string, d []byte) error { return os.Chmod(p, 0o000) }, "permission denied"})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := storePath(t)
			data := good(t, path)
			if err := tt.break_(path, data); err != nil {
				t.Fatal(err)
			}
			broken, _ := os.ReadFile(path)
			clk := newClock()
			s, err := Open(path, Options{Now: clk.now})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Err(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Err() = %v, want ErrUnavailable naming the file and %q", err, tt.errHas)
			}
			// The approved device is held, and so is a new one.
			for _, id := range []string{"n1", "n9"} {
				if v, err := s.Check(seen(id, "aaa")); err == nil || v.Approved {
					t.Errorf("Check(%s) = %+v, %v; want held with an error", id, v, err)
				}
			}
			if _, _, err := s.Approve("n1", "ops"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Approve on a broken store = %v", err)
			}
			if _, err := s.Revoke("n1"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Revoke on a broken store = %v", err)
			}
			if _, err := s.List(); !errors.Is(err, ErrUnavailable) {
				t.Errorf("List on a broken store = %v", err)
			}
			// Nothing was written over the broken file.
			if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
				os.Chmod(path, 0o600)
				if now, _ := os.ReadFile(path); string(now) != string(broken) && broken != nil {
					t.Errorf("the broken file was rewritten")
				}
			}
			// Fixed, it is read again on the next request once the retry
			// interval has passed.
			os.Remove(path)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if v, err := s.Check(seen("n1", "aaa")); err == nil || v.Approved {
				t.Errorf("re-read before the retry interval")
			}
			clk.add(retryEvery)
			if v, err := s.Check(seen("n1", "aaa")); err != nil || !v.Approved {
				t.Errorf("after the fix: %+v, %v", v, err)
			}
		})
	}
}

// TestPairingConcurrentApprovals approves many devices at once while new
// devices arrive, through separate Open handles as overlapping configs do,
// and checks that the file holds every change.
func TestPairingConcurrentApprovals(t *testing.T) {
	path := storePath(t)
	const n = 40
	first, _ := Open(path, Options{MaxPending: 1000})
	codes := make([]string, n)
	for i := range n {
		v, err := first.Check(seen(fmt.Sprintf("dev%02d", i), "k"))
		if err != nil {
			t.Fatal(err)
		}
		codes[i] = v.Device.Code
	}
	second, _ := Open(path, Options{MaxPending: 1000}) // a reloaded config
	if first != second {
		t.Fatal("Open gave two stores for one file")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		s := first
		if i%2 == 1 {
			s = second
		}
		wg.Go(func() {
			if _, _, err := s.Approve(codes[i], fmt.Sprintf("op%d", i)); err != nil {
				errs <- err
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
	list, err := New(path, Options{}).List()
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
		t.Errorf("on disk: %d approved (want %d), %d new pending (want %d)", approved, n, pending, n)
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
			got, err := Decode([]byte(tt.in))
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
		devices, err := Decode(data)
		if err != nil {
			return
		}
		// What decodes must encode and decode to the same devices.
		enc, err := Encode(devices)
		if err != nil {
			t.Fatalf("Encode after Decode: %v", err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(x))): %v\n%s", err, enc)
		}
		if len(again) != len(devices) {
			t.Fatalf("round trip: %d devices, want %d", len(again), len(devices))
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

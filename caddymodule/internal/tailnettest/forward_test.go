package tailnettest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestForward checks that a connection to the loopback forwarder reaches the
// target as the forwarding node (the server's WhoIs names alice, not the
// host), that a bad target is refused, and that Close ends connections in
// flight and stops listening.
func TestForward(t *testing.T) {
	tn := New(t)
	gw := tn.NewNode(t, "gw")
	lc, err := gw.LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := gw.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, func(w http.ResponseWriter, r *http.Request) {
		who, err := lc.WhoIs(r.Context(), r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(who.UserProfile.LoginName)
	})
	alice := tn.NewNode(t, "alice-laptop", WithLogin("alice@example.com"))
	tn.WaitPeer(t, alice, "gw")

	if _, err := alice.Forward("gw." + Domain); err == nil {
		t.Error("Forward to a target without a port succeeded")
	}

	fw, err := alice.Forward("gw." + Domain + ":80")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fw.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:<port>", fw.Addr())
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + fw.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
	if got := strings.TrimSpace(string(body)); resp.StatusCode != 200 || got != `"alice@example.com"` {
		t.Errorf("GET through the forwarder = %d %s, want 200 \"alice@example.com\"", resp.StatusCode, got)
	}

	// A connection left open is closed by Close.
	open, err := net.Dial("tcp", fw.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.Write([]byte("GET / HTTP/1.1\r\nHost: gw\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := open.Read(buf); err != nil {
		t.Fatalf("reading the first response: %v", err)
	}
	if err := fw.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	open.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, open); err != nil {
		t.Errorf("the open connection was not closed by Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", fw.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("the forwarder still accepts connections after Close")
	}
	if err := fw.Close(); err != nil {
		t.Errorf("a second Close() = %v", err)
	}
}

package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGuardBodyLimits: an admitted request's body is capped in size and in
// time, so neither a huge nor a slow body can hold the gateway.
func TestGuardBodyLimits(t *testing.T) {
	var mu sync.Mutex
	var complete []int // sizes of bodies the backend read to the end
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err == nil {
			mu.Lock()
			complete = append(complete, len(b))
			mu.Unlock()
		}
	}))
	defer be.Close()
	tok := randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", tok)
	port := freePort(t)
	addr := "127.0.0.1:" + itoa(port)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
}
http://%s {
	clawgate %s {
		token ci {
			env CG_TEST_TOKEN_CI
		}
		max_body 1KiB
		body_timeout 1s
		allow token:ci
	}
}`, addr, be.Listener.Addr()))
	waitHTTP(t, "http://"+addr)
	completed := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), complete...)
	}
	head := "POST /tools/invoke HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + tok + "\r\nX-Real-IP: 203.0.113.7\r\n"

	t.Run("within the limits", func(t *testing.T) {
		body := strings.Repeat("a", 1000)
		if got := rawRequest(t, addr, head+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))+body); got != 200 {
			t.Fatalf("status %d", got)
		}
		if c := completed(); len(c) != 1 || c[0] != 1000 {
			t.Fatalf("backend read %v", c)
		}
	})
	t.Run("declared too large", func(t *testing.T) {
		before := len(completed())
		body := strings.Repeat("a", 2000)
		if got := rawRequest(t, addr, head+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))+body); got != 413 {
			t.Fatalf("status %d, want 413", got)
		}
		if len(completed()) != before {
			t.Fatal("the backend read an oversized body")
		}
	})
	t.Run("chunked, too large", func(t *testing.T) {
		before := len(completed())
		chunk := strings.Repeat("a", 800)
		got := rawRequest(t, addr, head+"Transfer-Encoding: chunked\r\n\r\n"+
			fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk))
		if got != 413 {
			t.Errorf("status %d, want 413", got)
		}
		if len(completed()) != before {
			t.Fatal("the backend read an oversized body to the end")
		}
	})
	t.Run("slow body is cut", func(t *testing.T) {
		before := len(completed())
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if _, err := io.WriteString(c, head+"Content-Length: 100\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < 100; i++ {
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		took := time.Since(start)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatalf("a 20 s body trickle was admitted whole")
			}
		}
		if took > 5*time.Second {
			t.Fatalf("the slow body held the connection for %v (body_timeout 1s)", took)
		}
		c.Close()
		<-done
		if len(completed()) != before {
			t.Fatal("the backend read the slow body to the end")
		}
		t.Logf("slow body cut after %v", took.Round(10*time.Millisecond))
	})
}

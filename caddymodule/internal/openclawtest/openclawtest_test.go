package openclawtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mintToken returns a fresh gateway token, so no secret lives in the repository.
func mintToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("minting token: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenConfig is the shape of the reference config-token-only.json.
func tokenConfig(t *testing.T, token string, port int) []byte {
	t.Helper()
	gateway := map[string]any{
		"mode": "local",
		"bind": "loopback",
		"auth": map[string]any{"mode": "token", "token": token},
	}
	if port != 0 {
		gateway["port"] = port
	}
	b, err := json.Marshal(map[string]any{"gateway": gateway})
	if err != nil {
		t.Fatalf("encoding config: %v", err)
	}
	return b
}

func TestRealGatewayHealthz(t *testing.T) {
	Require(t)
	token := mintToken(t)
	port := FreePort(t)
	g := Start(t, tokenConfig(t, token, port), port)

	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(g.URL + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz = %d, want %d", resp.StatusCode, http.StatusOK)
	}

	tests := []struct {
		name          string
		authorization string
		want          int
	}{
		{name: "no bearer", authorization: "", want: http.StatusUnauthorized},
		{name: "wrong bearer", authorization: "Bearer " + mintToken(t), want: http.StatusUnauthorized},
		{name: "token as basic auth", authorization: "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+token)), want: http.StatusUnauthorized},
		{name: "right bearer", authorization: "Bearer " + token, want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, g.URL+"/tools/invoke", strings.NewReader(`{"tool":"sessions_list","args":{}}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("POST /tools/invoke: %v", err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("POST /tools/invoke with %s = %d %s, want %d", tt.name, resp.StatusCode, body, tt.want)
			}
		})
	}

	// The machine counts as a container, where OpenClaw's default bind is every interface; the
	// gateway must still be unreachable on any address but loopback.
	t.Run("loopback only", func(t *testing.T) {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			t.Fatalf("listing interface addresses: %v", err)
		}
		tried := 0
		for _, a := range addrs {
			ipnet, ok := a.(*net.IPNet)
			if !ok || ipnet.IP.IsLoopback() || ipnet.IP.IsLinkLocalUnicast() {
				continue
			}
			tried++
			addr := net.JoinHostPort(ipnet.IP.String(), strconv.Itoa(g.Port))
			if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				c.Close()
				t.Errorf("dial %s succeeded, want the gateway reachable on loopback only", addr)
			}
		}
		if tried == 0 {
			t.Skip("no non-loopback address on this host to probe")
		}
	})

	g.Stop()
	if _, err := client.Get(g.URL + "/healthz"); err == nil {
		t.Errorf("GET /healthz after Stop succeeded, want the gateway gone")
	}
}

func TestRealAudit(t *testing.T) {
	Require(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "openclaw.json")
	if err := os.WriteFile(config, tokenConfig(t, mintToken(t), 0), 0o600); err != nil {
		t.Fatal(err)
	}

	out := Audit(t, config, filepath.Join(dir, "state"), nil)

	var report struct {
		Summary *struct {
			Critical, Warn, Info int
		} `json:"summary"`
		Findings []struct {
			CheckID  string `json:"checkId"`
			Severity string `json:"severity"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("decoding audit JSON: %v\n%s", err, out)
	}
	if report.Summary == nil {
		t.Fatalf("audit JSON has no summary:\n%s", out)
	}
	// The summary must agree with the findings it summarises, or one of them is misread.
	counts := map[string]int{}
	ids := map[string]bool{}
	for _, f := range report.Findings {
		counts[f.Severity]++
		ids[f.CheckID] = true
	}
	got := [3]int{report.Summary.Critical, report.Summary.Warn, report.Summary.Info}
	want := [3]int{counts["critical"], counts["warn"], counts["info"]}
	if got != want {
		t.Errorf("summary critical/warn/info = %v, findings count %v", got, want)
	}
	// A token gateway on loopback with no trustedProxies: the one warning clawgate's setup fixes.
	if !ids["gateway.trusted_proxies_missing"] {
		t.Errorf("audit findings = %v, want gateway.trusted_proxies_missing among them", ids)
	}
}

//go:build linux

package caddymodule

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/clawgate/clawgate/caddymodule/internal/pairing"
)

// TestDevicesOnUnixAdminSocket runs a real Caddy whose admin endpoint is a
// unix socket only its user can open, and approves and revokes devices
// through it with the devices command: the record names the operating system
// user the kernel reports for the connection, whatever the request claims.
func TestDevicesOnUnixAdminSocket(t *testing.T) {
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	seed := pairing.Open(&certmagic.FileStorage{Path: storage}, "home", pairing.Options{})
	var codes []string
	for i := range 3 {
		v, err := seed.Check(pairing.Seen{ID: fmt.Sprintf("node%d", i), NodeKey: fmt.Sprintf("nodekey:%02x", i), Node: fmt.Sprintf("laptop-%d", i), Login: "alice@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, v.Device.Code)
	}
	// A socket directory others may enter, so that the socket's own mode is
	// what keeps them out.
	sockDir, err := os.MkdirTemp("", "clawgate-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "admin.sock")
	cfgPath, stateDir := gatewayDir(t, "alice@example.com")
	caddyfile := fmt.Sprintf(`{
	admin unix/%s|0600
	storage file_system %s
	clawgate {
		gateway home {
			config %s
			state_dir %s
			pairing required
		}
	}
}
`, sock, storage, cfgPath, stateDir)
	caddyfilePath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfilePath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddy(t, caddyfile)

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("the admin socket: %v", err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode = %v, want a socket with 0600", fi.Mode())
	}

	// The commands find the socket in the Caddyfile, as `caddy run` reads it.
	addr, err := adminAddress("", caddyfilePath, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "unix/" + sock + "|0600"; addr != want {
		t.Fatalf("adminAddress = %q, want %q", addr, want)
	}

	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	wantBy := me.Username + " (uid " + me.Uid + ")"

	t.Run("approve records the socket's peer", func(t *testing.T) {
		var out bytes.Buffer
		if err := runDevicesCommand(&out, addr, "approve", codes[0], "", false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "approved laptop-0 (node0, alice@example.com) for gateway home") {
			t.Errorf("approve said %q", out.String())
		}
		d, err := pairing.Open(&certmagic.FileStorage{Path: storage}, "home", pairing.Options{}).Find("node0")
		if err != nil {
			t.Fatal(err)
		}
		if d.ApprovedBy != wantBy {
			t.Errorf("ApprovedBy = %q, want %q", d.ApprovedBy, wantBy)
		}
	})

	t.Run("a claimed approver is not recorded", func(t *testing.T) {
		req := fmt.Sprintf(`{"device": %q, "by": "mallory"}`, codes[1])
		body, err := adminCall(addr, "POST", "/clawgate/devices/approve", []byte(req))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), `"changed":true`) {
			t.Errorf("answer %s", body)
		}
		d, err := pairing.Open(&certmagic.FileStorage{Path: storage}, "home", pairing.Options{}).Find("node1")
		if err != nil {
			t.Fatal(err)
		}
		if d.ApprovedBy != wantBy {
			t.Errorf("ApprovedBy = %q, want %q (the claim %q must not be the record)", d.ApprovedBy, wantBy, "mallory")
		}
	})

	t.Run("errors come back through the socket", func(t *testing.T) {
		var out bytes.Buffer
		err := runDevicesCommand(&out, addr, "approve", "XXXX-XXXX", "", false)
		if err == nil || err.Error() != `no device with ID or pairing code "XXXX-XXXX"` {
			t.Errorf("approving an unknown device: %v", err)
		}
		err = runDevicesCommand(&out, addr, "approve", codes[2], "elsewhere", false)
		if err == nil || !strings.Contains(err.Error(), `gateway "elsewhere" has no device pairing`) {
			t.Errorf("approving on an unknown gateway: %v", err)
		}
	})

	t.Run("list and revoke", func(t *testing.T) {
		var out bytes.Buffer
		if err := runDevicesCommand(&out, addr, "list", "", "", false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), wantBy) || !strings.Contains(out.String(), "pending") {
			t.Errorf("list:\n%s", out.String())
		}
		out.Reset()
		if err := runDevicesCommand(&out, addr, "revoke", "node0", "", false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "revoked laptop-0") {
			t.Errorf("revoke said %q", out.String())
		}
	})

	t.Run("another user cannot open the socket", func(t *testing.T) {
		if os.Geteuid() != 0 {
			if inCI() {
				t.Fatal("acting as another user needs root; CI runs the tests as root")
			}
			t.Skip("acting as another user needs root")
		}
		const nobody = 65534
		if err := dialAs(nobody, sock); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("uid %d dialing the 0600 admin socket: %v, want permission denied", nobody, err)
		}
		// The same dial succeeds once the socket is open to all, so the
		// refusal above is the socket's mode at work.
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(sock, 0o600)
		if err := dialAs(nobody, sock); err != nil {
			t.Errorf("uid %d dialing a 0666 socket: %v", nobody, err)
		}
	})
}

// dialAs connects to a unix socket as user uid: on a thread of its own whose
// user IDs are changed for that thread only (the raw setresuid call, unlike
// syscall.Setuid, is not applied to the whole process), and which ends with
// the goroutine.
func dialAs(uid int, path string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			errc <- fmt.Errorf("setresuid %d: %w", uid, e)
			return
		}
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	return <-errc
}

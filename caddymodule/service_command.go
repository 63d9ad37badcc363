package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/clawgate/clawgate/caddymodule/internal/service"
)

// newServiceCommand is `caddy clawgate service`.
func newServiceCommand() *cobra.Command {
	var o serviceOptions
	run := func(action string) func(*cobra.Command, []string) error {
		return withExitStatus(func(c *cobra.Command, _ caddycmd.Flags) (int, error) {
			o.action = action
			if err := runServiceCommand(c.OutOrStdout(), c.ErrOrStderr(), o); err != nil {
				return 1, err
			}
			return 0, nil
		})
	}
	cmd := &cobra.Command{
		Use:   "service install|uninstall [--user] [--print] [--config Caddyfile] [--owner NAME] [--kind systemd|launchd]",
		Short: "Installs clawgate's Caddy as a systemd or launchd service",
		Long: `
Writes a service file that runs this caddy binary with the Caddy config
(--config, else ./Caddyfile), as the gateway owner: clawgate reads the
owner's openclaw.json and state dir, which OpenClaw keeps private.

  --user    a user service next to OpenClaw's own (systemctl --user, or a
            launchd agent); it starts at boot only with
            'loginctl enable-linger <you>'
  (default) a system service (/etc/systemd/system, or a launchd daemon)
            that runs as --owner (default: $SUDO_USER, else you)

The systemd unit is hardened: no capabilities, no new privileges, the file
system read-only but for the state clawgate writes, reload through
'caddy reload' on the admin socket. The config's admin endpoint must be a
unix socket only the owner can open (admin unix/<path>|0600).

--print prints the file instead (to stdout; which kind and where it goes, to
stderr). install refuses to overwrite, and uninstall to remove, a file
someone changed since install wrote it.
`,
	}
	cmd.PersistentFlags().BoolVar(&o.user, "user", false, "a user service (systemctl --user, a launchd agent) instead of a system one")
	cmd.PersistentFlags().BoolVar(&o.print, "print", false, "print the file instead of writing it")
	cmd.PersistentFlags().StringVar(&o.config, "config", "", "the Caddy config the service runs (default ./Caddyfile)")
	cmd.PersistentFlags().StringVar(&o.adapter, "adapter", "", "the config's adapter")
	cmd.PersistentFlags().StringVar(&o.owner, "owner", "", "system service: the user it runs as (default $SUDO_USER, else you)")
	cmd.PersistentFlags().StringVar(&o.kind, "kind", "", "systemd or launchd (default: this system's)")
	cmd.AddCommand(
		&cobra.Command{Use: "install", Short: "Writes (or prints) the service file", Args: cobra.NoArgs, RunE: run("install")},
		&cobra.Command{Use: "uninstall", Short: "Removes the service file install wrote", Args: cobra.NoArgs, RunE: run("uninstall")},
	)
	return cmd
}

// serviceOptions are the flags of `caddy clawgate service`.
type serviceOptions struct {
	action, config, adapter, owner, kind string
	user, print                          bool
	// binary is the caddy binary the service runs; empty: this one.
	binary string
}

// serviceFile is a rendered service file and where it goes.
type serviceFile struct {
	kind, path, content string
	params              service.Params
}

func runServiceCommand(out, errOut io.Writer, o serviceOptions) error {
	if o.kind == "" {
		o.kind = "systemd"
		if runtime.GOOS == "darwin" {
			o.kind = "launchd"
		}
	}
	if o.kind != "systemd" && o.kind != "launchd" {
		return fmt.Errorf("--kind %q: want systemd or launchd", o.kind)
	}
	if o.action == "uninstall" {
		owner, err := serviceOwner(o)
		if err != nil {
			return err
		}
		path := serviceFilePath(o, owner.HomeDir, serviceConfigHome(o, owner))
		removed, err := service.Uninstall(path)
		if err != nil {
			return err
		}
		if !removed {
			fmt.Fprintf(out, "%s is not installed: nothing to remove\n", path)
			return nil
		}
		fmt.Fprintf(out, "removed %s\n", path)
		if o.kind == "systemd" {
			fmt.Fprintf(out, "then: %s daemon-reload\n", systemctl(o.user))
		}
		return nil
	}
	f, err := renderServiceFile(o)
	if err != nil {
		return err
	}
	if o.print {
		fmt.Fprintf(errOut, "# %s, for %s\n", f.kind, f.path)
		_, err := io.WriteString(out, f.content)
		return err
	}
	if err := makeWritePaths(f.params); err != nil {
		return err
	}
	wrote, err := service.Install(f.path, f.content)
	if err != nil {
		return err
	}
	if wrote {
		fmt.Fprintf(out, "wrote the %s to %s\n", f.kind, f.path)
	} else {
		fmt.Fprintf(out, "the %s at %s is already up to date\n", f.kind, f.path)
	}
	switch {
	case o.kind == "systemd" && o.user:
		fmt.Fprintf(out, "then:\n  systemctl --user daemon-reload\n  systemctl --user enable --now %s\n", service.Name)
		fmt.Fprintf(out, "  loginctl enable-linger %s   # else it starts only once you log in, and stops when you log out\n", f.params.Owner)
		fmt.Fprintf(out, "logs: journalctl --user -u %s\n", service.Name)
	case o.kind == "systemd":
		fmt.Fprintf(out, "then:\n  systemctl daemon-reload\n  systemctl enable --now %s\nlogs: journalctl -u %s\n", service.Name, service.Name)
	default:
		domain := "system"
		if o.user {
			domain = "gui/" + f.params.UID
		}
		fmt.Fprintf(out, "then:\n  launchctl bootstrap %s %s\n", domain, f.path)
	}
	return nil
}

func systemctl(user bool) string {
	if user {
		return "systemctl --user"
	}
	return "systemctl"
}

// serviceOwner is the account the service runs as.
func serviceOwner(o serviceOptions) (*user.User, error) {
	me, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("finding the current user: %w", err)
	}
	// The installing user's own $HOME wins over the password database's, as
	// for every other program they run; the unit pins it.
	if home := os.Getenv("HOME"); filepath.IsAbs(home) {
		me.HomeDir = home
	}
	if o.user {
		if o.owner != "" && o.owner != me.Username {
			return nil, fmt.Errorf("--owner %s: a user service runs as whoever installs it (%s); install it as %s", o.owner, me.Username, o.owner)
		}
		return me, nil
	}
	name := o.owner
	explicit := name != ""
	if name == "" {
		name = os.Getenv("SUDO_USER")
	}
	if name == "" {
		name = me.Username
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("the service's user %q: %w", name, err)
	}
	if u.Uid == me.Uid {
		u = me
	}
	if u.Uid == "0" && !explicit {
		return nil, errors.New("the service would run as root: name the gateway's owner, whose ~/.openclaw it reads, with --owner (or --owner root if that is truly root)")
	}
	return u, nil
}

// serviceConfigHome is the owner's XDG config dir: $XDG_CONFIG_HOME for the
// current user, else ~/.config.
func serviceConfigHome(o serviceOptions, owner *user.User) string {
	if me, err := user.Current(); err == nil && me.Uid == owner.Uid {
		if v := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(v) {
			return v
		}
	}
	return filepath.Join(owner.HomeDir, ".config")
}

func serviceDataHome(owner *user.User) string {
	if me, err := user.Current(); err == nil && me.Uid == owner.Uid {
		if v := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(v) {
			return v
		}
	}
	return filepath.Join(owner.HomeDir, ".local", "share")
}

func serviceFilePath(o serviceOptions, home, configHome string) string {
	if o.kind == "launchd" {
		return service.LaunchdPath(o.user, home)
	}
	return service.SystemdPath(o.user, configHome)
}

// renderServiceFile renders the service file for o: it reads the Caddy
// config in the environment the service will have, so the paths it finds
// (Caddy's data dir, node state, device approvals, the admin socket) are
// the ones the service will use.
func renderServiceFile(o serviceOptions) (*serviceFile, error) {
	owner, err := serviceOwner(o)
	if err != nil {
		return nil, err
	}
	bin := o.binary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding this caddy binary: %w", err)
		}
	}
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		return nil, fmt.Errorf("finding this caddy binary: %w", err)
	}
	if strings.Contains(bin, string(filepath.Separator)+"go-build") {
		return nil, fmt.Errorf("this caddy is a temporary build (%s, from go run) that will be gone: build it (go build -o /usr/local/bin/caddy ./cmd/caddy) and run install with that binary", bin)
	}
	config := o.config
	if config == "" {
		config = "Caddyfile"
	}
	if config, err = filepath.Abs(config); err != nil {
		return nil, err
	}
	if _, err := os.Stat(config); err != nil {
		return nil, fmt.Errorf("the service's Caddy config: %w", err)
	}
	configHome := serviceConfigHome(o, owner)
	dataHome := serviceDataHome(owner)
	runtimeDir := "/run/user/" + owner.Uid
	if o.kind == "launchd" {
		runtimeDir = filepath.Join(owner.HomeDir, "Library", "Caches", "clawgate")
	} else if v := os.Getenv("XDG_RUNTIME_DIR"); o.user && filepath.IsAbs(v) {
		runtimeDir = v
	}
	env := []string{"HOME=" + owner.HomeDir, "XDG_DATA_HOME=" + dataHome, "XDG_CONFIG_HOME=" + configHome}
	if !o.user || o.kind == "launchd" {
		// A user manager sets XDG_RUNTIME_DIR itself.
		env = append(env, "XDG_RUNTIME_DIR="+runtimeDir)
	}
	var cfgJSON []byte
	var writePaths []string
	err = withEnv(append(env, "USER="+owner.Username, "LOGNAME="+owner.Username, "XDG_RUNTIME_DIR="+runtimeDir), func() error {
		uc, err := readUserConfig(config, o.adapter)
		if err != nil {
			return err
		}
		cfgJSON = uc.JSON
		writePaths, err = serviceWritePaths(cfgJSON)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("the service's Caddy config %s: %w", config, err)
	}
	group := ""
	if g, err := user.LookupGroupId(owner.Gid); err == nil {
		group = g.Name
	}
	p := service.Params{
		Binary: bin, Config: config, Adapter: o.adapter, User: o.user,
		Owner: owner.Username, Group: group, UID: owner.Uid, Home: owner.HomeDir,
		Env: env, WritePaths: writePaths,
	}
	f := &serviceFile{params: p, path: serviceFilePath(o, owner.HomeDir, configHome)}
	switch {
	case o.kind == "launchd" && o.user:
		f.kind = "launchd agent (runs as " + owner.Username + " while logged in)"
		f.content, err = service.LaunchdPlist(p)
	case o.kind == "launchd":
		f.kind = "launchd daemon (runs as " + owner.Username + " from boot)"
		f.content, err = service.LaunchdPlist(p)
	case o.user:
		f.kind = "systemd user unit (systemctl --user, runs as " + owner.Username + ")"
		f.content, err = service.SystemdUnit(p)
	default:
		f.kind = "systemd system unit (runs as " + owner.Username + ")"
		f.content, err = service.SystemdUnit(p)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// withEnv runs f with env set in this process, restoring it afterwards; the
// command is short-lived and runs nothing else meanwhile.
func withEnv(env []string, f func() error) error {
	type saved struct {
		v   string
		set bool
	}
	old := map[string]saved{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		if _, ok := old[k]; !ok {
			ov, set := os.LookupEnv(k)
			old[k] = saved{ov, set}
		}
		os.Setenv(k, v)
	}
	defer func() {
		for k, s := range old {
			if s.set {
				os.Setenv(k, s.v)
			} else {
				os.Unsetenv(k)
			}
		}
	}()
	return f()
}

// serviceWritePaths checks the admin endpoint of a Caddy config (JSON) and
// lists the directories a Caddy running it writes: Caddy's data and config
// dirs, the admin socket's dir, each node's state dir, each gateway's device
// approvals, and a file system storage's root.
func serviceWritePaths(cfgJSON []byte) ([]string, error) {
	var cfg struct {
		Admin *struct {
			Disabled bool   `json:"disabled"`
			Listen   string `json:"listen"`
		} `json:"admin"`
		Storage *struct {
			Module string `json:"module"`
			Root   string `json:"root"`
		} `json:"storage"`
		Apps struct {
			Clawgate *App `json:"clawgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("reading the config JSON: %w", err)
	}
	sock, err := privateAdminSocket(cfg.Admin != nil && cfg.Admin.Disabled, func() string {
		if cfg.Admin == nil {
			return ""
		}
		return cfg.Admin.Listen
	}())
	if err != nil {
		return nil, err
	}
	paths := []string{caddy.AppDataDir(), caddy.AppConfigDir(), filepath.Dir(sock)}
	if s := cfg.Storage; s != nil && s.Module == "file_system" && s.Root != "" {
		paths = append(paths, s.Root)
	}
	if app := cfg.Apps.Clawgate; app != nil {
		for name, n := range app.Nodes {
			if n == nil || n.StateDir == "" {
				continue
			}
			dir, err := resolveSetting("clawgate.nodes."+name+".state_dir", n.StateDir)
			if err != nil {
				return nil, err
			}
			paths = append(paths, dir)
		}
		for name, gc := range app.Gateways {
			if gc == nil || gc.Pairing == nil || gc.Pairing.Storage == "" {
				continue
			}
			file, err := resolveSetting("clawgate.gateways."+name+".pairing.storage", gc.Pairing.Storage)
			if err != nil {
				return nil, err
			}
			paths = append(paths, filepath.Dir(file))
		}
	}
	for i, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		paths[i] = abs
	}
	return paths, nil
}

// privateAdminSocket is the path of a config's admin unix socket, or why the
// admin endpoint is not one only its user can open.
func privateAdminSocket(disabled bool, listen string) (string, error) {
	const fix = "set `admin unix/{$XDG_RUNTIME_DIR:/run/clawgate}/clawgate-admin.sock|0600` in the Caddyfile's global options"
	if disabled {
		return "", fmt.Errorf("the admin endpoint is off, so the service cannot be reloaded and devices cannot be approved: %s", fix)
	}
	if listen == "" {
		listen = caddy.DefaultAdminListen
	}
	na, err := caddy.ParseNetworkAddress(listen)
	if err != nil {
		return "", fmt.Errorf("admin endpoint %q: %w", listen, err)
	}
	if !na.IsUnixNetwork() {
		return "", fmt.Errorf("the admin endpoint is %s (TCP), which every local user can reach, to load any config or approve a device: %s", listen, fix)
	}
	path, mode, err := splitUnixSocketMode(na.Host)
	if err != nil {
		return "", fmt.Errorf("admin endpoint %q: %w", listen, err)
	}
	if strings.HasPrefix(path, "@") {
		return "", fmt.Errorf("the admin endpoint %s is an abstract unix socket, which has no permissions: any local user can open it; %s", listen, fix)
	}
	if !filepath.IsAbs(path) || filepath.Dir(path) == "/" {
		return "", fmt.Errorf("the admin socket %q is not in a directory of its own (is $XDG_RUNTIME_DIR unset?): %s", path, fix)
	}
	if mode&0o077 != 0 {
		return "", fmt.Errorf("the admin socket %s is mode %04o, so others can open it: %s", path, mode, fix)
	}
	return path, nil
}

// splitUnixSocketMode splits "path|0600" as Caddy does; without a mode Caddy
// makes the socket 0200 (write for the owner alone).
func splitUnixSocketMode(addr string) (string, os.FileMode, error) {
	path, modeStr, ok := strings.Cut(addr, "|")
	if !ok {
		return addr, 0o200, nil
	}
	mode, err := strconv.ParseUint(modeStr, 8, 32)
	if err != nil || mode > 0o777 {
		return "", 0, fmt.Errorf("socket mode %q is not an octal file mode", modeStr)
	}
	return path, os.FileMode(mode), nil
}

// makeWritePaths creates the directories the service writes, 0700 and owned
// by its user: systemd mounts a missing ReadWritePaths entry read-only.
func makeWritePaths(p service.Params) error {
	uid, gid := -1, -1
	if u, err := user.Lookup(p.Owner); err == nil {
		fmt.Sscan(u.Uid, &uid)
		fmt.Sscan(u.Gid, &gid)
	}
	for _, dir := range p.WritePaths {
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		if strings.HasPrefix(dir, "/run/user/") {
			continue // made by systemd (user-runtime-dir@.service)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if os.Geteuid() == 0 && uid > 0 {
			if err := os.Chown(dir, uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

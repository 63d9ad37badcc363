package setup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// Change is one line of the diff: a path of the merged config, what it held,
// what it will hold, and why. Values are compact JSON; secrets never appear.
type Change struct {
	// Path is the config path, like gateway.auth.mode.
	Path string `json:"path"`
	// Op is "set", "add", "remove" or "move".
	Op string `json:"op"`
	// Old is the value before ("" when absent).
	Old string `json:"old,omitempty"`
	// New is the value after ("" for a removal); for a move, the new path.
	New string `json:"new,omitempty"`
	// Reason says why OpenClaw needs this behind clawgate.
	Reason string `json:"reason"`
	// File is the file the edit lands in, when it differs from the main config.
	File string `json:"file,omitempty"`
}

// Plan is what setup would change in one gateway's config.
type Plan struct {
	// Config is the main config file.
	Config string `json:"config"`
	// Changes are the changes, in order.
	Changes []Change `json:"changes"`
	// OpenClaw is the release line the plan is written for, and why.
	OpenClaw release.Assumed `json:"openclaw"`
	// Notes are things the user should know that no change fixes.
	Notes []string `json:"notes,omitempty"`
	// Unwritable says why the changes cannot be written by setup, when they
	// cannot; the plan is still shown.
	Unwritable string `json:"unwritable,omitempty"`

	load   audit.LoadOptions
	edge   Edge
	ed     *editor
	ops    []op
	err    error
	before func() // test hook: runs right before each rename
}

// Prepare loads a gateway's config the way OpenClaw does and plans the
// changes that make it agree with e. It fails only when the config cannot be
// loaded; a plan whose edits cannot be made safely in the text is returned
// with Unwritable set.
func Prepare(lo audit.LoadOptions, e Edge, o Options) (*Plan, error) {
	cfg, err := audit.Load(lo)
	if err != nil {
		return nil, fmt.Errorf("loading the gateway's OpenClaw config: %w", err)
	}
	lo.ConfigPath = cfg.Path
	p := &Plan{Config: cfg.Path, load: lo, edge: e, Notes: slices.Clone(e.Notes)}
	ev := o.Version
	ev.Hint = release.ConfigHint(cfg.Tree)
	p.OpenClaw = release.Assume(ev)
	line := p.OpenClaw.Features()
	p.ops = planOps(cfg.Tree, e, o, line)
	p.Notes = append(p.Notes, versionNotes(p.OpenClaw, e, o)...)
	if line.DeviceAutoApprove && wantsAutoApprove(e, o) && len(e.AutoApproveScopes) == 0 {
		p.Notes = append(p.Notes, "deviceAutoApprove: clawgate's rules grant no non-admin operator scope, so there is nothing to auto-approve; each browser waits on OpenClaw's manual pairing")
	}
	if o.DeviceAutoApprove && !e.EdgePairing {
		p.Notes = append(p.Notes, "--device-auto-approve: the gateway has no `pairing required` in clawgate, so nothing is written: OpenClaw would auto-approve any browser of an allowed tailnet login; turn on pairing required for this gateway first")
	}
	if env := cfg.Getenv(envToken); env != "" {
		if _, inConfig := lookup(cfg.Tree, []string{"env", "vars", envToken}); !inConfig {
			if _, inConfig = lookup(cfg.Tree, []string{"env", envToken}); !inConfig {
				p.Notes = append(p.Notes, envToken+" is set in this environment; if the gateway's service sets it too, a trusted-proxy gateway refuses to start: remove it there (or rename it to "+envPassword+")")
			}
		}
	}

	ed, err := openEditor(cfg)
	if err != nil {
		p.fail(err)
		p.changesWithoutFiles()
		return p, nil
	}
	p.ed = ed
	for _, op := range p.ops {
		where, err := ed.apply(op)
		if err != nil {
			p.fail(err)
			where = ""
		}
		p.Changes = append(p.Changes, op.change(where, cfg.Path))
	}
	// Said now rather than only at --write: a file setup would refuse to
	// replace (symlink, read-only) is worth knowing about before.
	for _, path := range p.Files() {
		if err := ed.files[path].check(); err != nil {
			p.fail(err)
		}
	}
	if p.err == nil {
		if err := p.validateEdited(); err != nil {
			p.fail(err)
		}
	}
	for _, path := range ed.plainSecrets {
		p.Notes = append(p.Notes, fmt.Sprintf("%s now holds the old token in plain text (the audit warns about it); consider \"${%s}\" or a SecretRef instead", PathString(path), envPassword))
	}
	return p, nil
}

// validateEdited refuses a plan whose result OpenClaw would not load: the
// config as it would be written is loaded (includes and ${VAR} as OpenClaw
// resolves them) and checked against the schema of the OpenClaw line the plan
// is for.
func (p *Plan) validateEdited() error {
	files := p.Files()
	if len(files) == 0 {
		return nil
	}
	lo := p.load
	lo.Overlay = make(map[string][]byte, len(files))
	for _, path := range files {
		lo.Overlay[path] = p.ed.files[path].text
	}
	cfg, err := audit.Load(lo)
	if err != nil {
		return fmt.Errorf("the config as setup would write it does not load: %w", err)
	}
	schema := audit.SchemaVersionFor(p.OpenClaw)
	issues, err := audit.ValidateVersion(cfg, schema)
	if err != nil {
		return fmt.Errorf("validating the config as setup would write it: %w", err)
	}
	if len(issues) == 0 {
		return nil
	}
	lines := make([]string, len(issues))
	for i, is := range issues {
		lines[i] = is.Path + ": " + is.Message
	}
	return fmt.Errorf("OpenClaw would refuse the config as setup would write it (fix these keys first, or check that this OpenClaw is %s): %s", schema, strings.Join(lines, "; "))
}

// versionNotes says which OpenClaw line the plan is for and what of the edge
// that line cannot express.
func versionNotes(a release.Assumed, e Edge, o Options) []string {
	line := a.Features()
	var notes []string
	if a.Known {
		notes = append(notes, "planned for "+a.Why)
	} else {
		notes = append(notes, "planned for OpenClaw "+a.Line+": "+a.Why+"; if the gateway runs an older line, set openclaw_version in its clawgate gateway block (2026.7.35 refuses to start with gateway.auth.identityScopes)")
	}
	if !line.IdentityScopes && len(e.Scopes) > 0 {
		notes = append(notes, fmt.Sprintf("OpenClaw %s has no gateway.auth.identityScopes, so the scopes clawgate's rules grant cannot be granted per identity: a client without a paired device (CLI, automation) gets hello-ok with no scopes on WebSocket; on HTTP each request still has the scopes of its clawgate rule (x-openclaw-scopes); a browser needs one manual `openclaw devices approve <requestId>` on the gateway host", line.Version))
	}
	if wantsAutoApprove(e, o) && !line.DeviceAutoApprove {
		notes = append(notes, fmt.Sprintf("OpenClaw %s has no deviceAutoApprove: approve each new browser once with openclaw devices approve", line.Version))
	}
	// What no config change lifts on this line, in the words the gate
	// uses for it, so the approvals the notes above ask for are made with
	// it in mind.
	for _, f := range audit.LineFindings(a) {
		notes = append(notes, f.Detail+" "+f.Remediation+" The gate warns about this as "+f.CheckID+".")
	}
	return notes
}

func (p *Plan) fail(err error) {
	if p.err == nil {
		p.err = err
		p.Unwritable = err.Error()
	}
}

func (p *Plan) changesWithoutFiles() {
	for _, o := range p.ops {
		p.Changes = append(p.Changes, o.change("", p.Config))
	}
}

// change renders an op for the diff.
func (o op) change(where, main string) Change {
	c := Change{Path: PathString(o.path), Reason: o.reason}
	if where != "" && where != main {
		c.File = where
	}
	if o.had {
		c.Old = display(o.path, o.old)
	}
	switch o.kind {
	case opSet:
		c.Op = "set"
		if !o.had {
			c.Op = "add"
		}
		c.New = display(o.path, o.value)
	case opDelete:
		c.Op = "remove"
	case opMove:
		c.Op = "move"
		c.New = PathString(append(slices.Clone(o.path[:len(o.path)-1]), o.newKey))
	}
	return c
}

// openEditor reads the main config and every included file, and checks that
// the main file still holds what the loader read.
func openEditor(cfg *audit.Config) (*editor, error) {
	ed := &editor{files: map[string]*file{}}
	for _, p := range append([]string{cfg.Path}, cfg.Includes...) {
		f, err := readFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		ed.files[filepath.Clean(p)] = f
	}
	ed.main = ed.files[filepath.Clean(cfg.Path)]
	return ed, nil
}

// Pending reports whether the plan has changes to write.
func (p *Plan) Pending() bool { return len(p.Changes) > 0 }

// Files returns the files the plan would write, the main config last.
func (p *Plan) Files() []string {
	if p.ed == nil {
		return nil
	}
	var out []string
	for path, f := range p.ed.files {
		if f.changed && path != filepath.Clean(p.Config) {
			out = append(out, path)
		}
	}
	slices.Sort(out)
	if f := p.ed.main; f != nil && f.changed {
		out = append(out, f.path)
	}
	return out
}

// Text returns the new text of a file the plan changes.
func (p *Plan) Text(path string) ([]byte, bool) {
	if p.ed == nil {
		return nil, false
	}
	f := p.ed.files[filepath.Clean(path)]
	if f == nil || !f.changed {
		return nil, false
	}
	return slices.Clone(f.text), true
}

// Result is what Write did.
type Result struct {
	// Written are the files replaced, the main config last.
	Written []string `json:"written,omitempty"`
	// Backups are the copies of their previous contents, 0600.
	Backups []string `json:"backups,omitempty"`
	// Report is the audit of the config as written.
	Report audit.Report `json:"report"`
	// Consistency are the clawgate.* findings left; none when setup did its job.
	Consistency []audit.Finding `json:"consistency,omitempty"`
	// Expected are the check IDs of Report's findings that a consistent
	// clawgate front door produces on the plan's OpenClaw line, as the gate
	// counts them.
	Expected []string `json:"expected,omitempty"`
}

// Write applies the plan: each changed file is written atomically (a 0600
// temporary file in the same directory, renamed over it) after a timestamped
// 0600 backup of what it held, and only if it still holds exactly what was
// read, is a regular file (not a symlink) and is writable. Then the config is
// audited again. Nothing is written when any file fails its checks.
func (p *Plan) Write(now time.Time) (*Result, error) {
	if p.err != nil {
		return nil, fmt.Errorf("not writing %s: %w", p.Config, p.err)
	}
	res := &Result{}
	files := p.Files()
	for _, path := range files {
		if err := p.ed.files[path].check(); err != nil {
			return nil, err
		}
	}
	stamp := now.UTC().Format("20060102T150405Z")
	for _, path := range files {
		f := p.ed.files[path]
		backup, err := f.write(stamp, p.before)
		if backup != "" {
			res.Backups = append(res.Backups, backup)
		}
		if err != nil {
			return res, err
		}
		res.Written = append(res.Written, path)
	}
	cfg, err := audit.Load(p.load)
	if err != nil {
		return res, fmt.Errorf("auditing the written config: %w", err)
	}
	// The audit the gate runs on this gateway: its line's rules, with the
	// newest line's checks kept on.
	res.Report = audit.Run(cfg, audit.RunOptions{Now: now, Line: p.OpenClaw.Line})
	expect := p.edge.Expect()
	expect.NoDeviceAutoApprove = !p.OpenClaw.Features().DeviceAutoApprove
	cons := audit.Consistency(cfg, expect)
	for _, f := range cons {
		if strings.HasPrefix(f.CheckID, "clawgate.") {
			res.Consistency = append(res.Consistency, f)
		}
	}
	res.Expected = audit.ExpectedByDesignOn(cfg, p.OpenClaw.Line, cons)
	return res, nil
}

// ErrChanged is returned when a config file changed after setup read it.
var ErrChanged = errors.New("changed since setup read it")

// check refuses a file setup must not replace.
func (f *file) check() error {
	info, err := os.Lstat(f.path)
	if err != nil {
		return fmt.Errorf("checking %s: %w", f.path, err)
	}
	if info.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink: setup replaces files by renaming and would turn the link into a copy; point the gateway (OPENCLAW_CONFIG_PATH or the clawgate gateway block's config) at the real file", f.path)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", f.path)
	}
	if info.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("%s is read-only (mode %04o): setup does not override that; make it writable (chmod 600) and run setup again", f.path, info.Mode().Perm())
	}
	return f.unchanged()
}

// unchanged reports an error when the file no longer holds what was read.
func (f *file) unchanged() error {
	info, err := os.Lstat(f.path)
	if err != nil {
		return fmt.Errorf("checking %s: %w", f.path, err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("checking %s: %w", f.path, err)
	}
	if !bytes.Equal(data, f.data) || !info.ModTime().Equal(f.info.ModTime()) || !os.SameFile(info, f.info) {
		return fmt.Errorf("%s %w; nothing was written: run setup again", f.path, ErrChanged)
	}
	return nil
}

// write replaces the file with its new text, keeping a backup, and returns
// the backup's path.
func (f *file) write(stamp string, before func()) (string, error) {
	dir, base := filepath.Split(f.path)
	tmp, err := os.CreateTemp(dir, "."+base+".clawgate-*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", f.path, err)
	}
	tmpPath := tmp.Name()
	done := false
	defer func() {
		if !done {
			os.Remove(tmpPath)
		}
	}()
	if err := writeSynced(tmp, f.text, f.info); err != nil {
		return "", fmt.Errorf("writing %s: %w", f.path, err)
	}
	backup, err := writeBackup(f.path, stamp, f.data, f.info)
	if err != nil {
		return "", err
	}
	if before != nil {
		before()
	}
	if err := f.unchanged(); err != nil {
		os.Remove(backup)
		return "", err
	}
	if err := os.Rename(tmpPath, f.path); err != nil {
		return backup, fmt.Errorf("replacing %s: %w", f.path, err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return backup, nil
}

// writeSynced fills a new file, mode 0600, owned like the original when
// setup runs as root, so the gateway's user can still read it.
func writeSynced(f *os.File, data []byte, like os.FileInfo) error {
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if st, ok := like.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// writeBackup keeps what a file held as <file>.clawgate-backup-<stamp>,
// never overwriting an earlier backup.
func writeBackup(path, stamp string, data []byte, like os.FileInfo) (string, error) {
	for i := 0; i < 100; i++ {
		name := path + ".clawgate-backup-" + stamp
		if i > 0 {
			name += fmt.Sprintf("-%d", i)
		}
		b, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("backing up %s: %w", path, err)
		}
		if err := writeSynced(b, data, like); err != nil {
			os.Remove(name)
			return "", fmt.Errorf("backing up %s: %w", path, err)
		}
		return name, nil
	}
	return "", fmt.Errorf("backing up %s: too many backups named %s.clawgate-backup-%s*", path, path, stamp)
}

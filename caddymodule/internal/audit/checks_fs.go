package audit

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/skilltree"
)

// Filesystem checks (src/security/audit.ts collectFilesystemFindings,
// audit-extra.async.ts, @openclaw/fs-safe permissions).

// perms is inspectPathPermissions on POSIX: lstat, then the target's mode
// when the path is a symlink.
type perms struct {
	ok        bool
	isSymlink bool
	isDir     bool
	bits      fs.FileMode
}

func inspectPerms(p string) perms {
	lst, err := os.Lstat(p)
	if err != nil {
		return perms{}
	}
	pr := perms{ok: true, isSymlink: lst.Mode()&fs.ModeSymlink != 0, isDir: lst.IsDir(), bits: lst.Mode().Perm()}
	if pr.isSymlink {
		if st, err := os.Stat(p); err == nil {
			pr.bits, pr.isDir = st.Mode().Perm(), st.IsDir()
		}
	}
	return pr
}

func (p perms) worldWritable() bool { return p.bits&0o002 != 0 }
func (p perms) groupWritable() bool { return p.bits&0o020 != 0 }
func (p perms) worldReadable() bool { return p.bits&0o004 != 0 }
func (p perms) groupReadable() bool { return p.bits&0o040 != 0 }

func permDetail(p string, pr perms) string { return fmt.Sprintf("%s mode=%03o", p, pr.bits) }

var shellSafeRe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

func chmodRemediation(p string, mode fs.FileMode) string {
	sep := ""
	if strings.HasPrefix(p, "-") {
		sep = "-- "
	}
	arg := p
	if !shellSafeRe.MatchString(p) {
		arg = "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
	}
	return fmt.Sprintf("chmod %03o %s%s", mode, sep, arg)
}

func (a *auditor) filesystem() {
	c := a.rt.cfg
	if st := a.inspect(c.StateDir); st.ok {
		if st.isSymlink {
			a.add("fs.state_dir.symlink", SeverityWarn, "State dir is a symlink", c.StateDir+" is a symlink; treat this as an extra trust boundary.", "")
		}
		switch {
		case st.worldWritable():
			a.add("fs.state_dir.perms_world_writable", SeverityCritical, "State dir is world-writable", permDetail(c.StateDir, st)+"; other users can write into your OpenClaw state.", chmodRemediation(c.StateDir, 0o700))
		case st.groupWritable():
			a.add("fs.state_dir.perms_group_writable", SeverityWarn, "State dir is group-writable", permDetail(c.StateDir, st)+"; group users can write into your OpenClaw state.", chmodRemediation(c.StateDir, 0o700))
		case st.groupReadable() || st.worldReadable():
			a.add("fs.state_dir.perms_readable", SeverityWarn, "State dir is readable by others", permDetail(c.StateDir, st)+"; consider restricting to 700.", chmodRemediation(c.StateDir, 0o700))
		}
	}
	if cp := a.inspect(c.Path); cp.ok {
		if cp.isSymlink {
			a.add("fs.config.symlink", SeverityWarn, "Config file is a symlink", c.Path+" is a symlink; make sure you trust its target.", "")
		}
		switch {
		case cp.worldWritable() || cp.groupWritable():
			a.add("fs.config.perms_writable", SeverityCritical, "Config file is writable by others", permDetail(c.Path, cp)+"; another user could change gateway/auth/tool policies.", chmodRemediation(c.Path, 0o600))
		case !cp.isSymlink && cp.worldReadable():
			a.add("fs.config.perms_world_readable", SeverityCritical, "Config file is world-readable", permDetail(c.Path, cp)+"; config can contain tokens and private settings.", chmodRemediation(c.Path, 0o600))
		case !cp.isSymlink && cp.groupReadable():
			a.add("fs.config.perms_group_readable", SeverityWarn, "Config file is group-readable", permDetail(c.Path, cp)+"; config can contain tokens and private settings.", chmodRemediation(c.Path, 0o600))
		}
	}
}

// includePerms checks every $include file, by its resolved path.
func (a *auditor) includePerms() {
	for _, inc := range a.rt.cfg.Includes {
		p := inc
		if real, err := filepath.EvalSymlinks(inc); err == nil {
			p = real
		}
		pr := a.inspect(p)
		if !pr.ok {
			continue
		}
		switch {
		case pr.worldWritable() || pr.groupWritable():
			a.add("fs.config_include.perms_writable", SeverityCritical, "Config include file is writable by others", permDetail(p, pr)+"; another user could influence your effective config.", chmodRemediation(p, 0o600))
		case pr.worldReadable():
			a.add("fs.config_include.perms_world_readable", SeverityCritical, "Config include file is world-readable", permDetail(p, pr)+"; include files can contain tokens and private settings.", chmodRemediation(p, 0o600))
		case pr.groupReadable():
			a.add("fs.config_include.perms_group_readable", SeverityWarn, "Config include file is group-readable", permDetail(p, pr)+"; include files can contain tokens and private settings.", chmodRemediation(p, 0o600))
		}
	}
}

// stateDeepFilesystem covers credentials/, per-agent auth profile stores,
// sessions.json and logging.file.
func (a *auditor) stateDeepFilesystem() {
	rt := a.rt
	c := rt.cfg
	oauth := filepath.Join(c.StateDir, "credentials")
	if o := strings.TrimSpace(c.Getenv("OPENCLAW_OAUTH_DIR")); o != "" {
		oauth = expandHome(o, c.home)
	}
	if pr := a.inspect(oauth); pr.ok && pr.isDir {
		switch {
		case pr.worldWritable() || pr.groupWritable():
			a.add("fs.credentials_dir.perms_writable", SeverityCritical, "Credentials dir is writable by others", permDetail(oauth, pr)+"; another user could drop/modify credential files.", chmodRemediation(oauth, 0o700))
		case pr.groupReadable() || pr.worldReadable():
			a.add("fs.credentials_dir.perms_readable", SeverityWarn, "Credentials dir is readable by others", permDetail(oauth, pr)+"; credentials and allowlists can be sensitive.", chmodRemediation(oauth, 0o700))
		}
	}
	ids := []string{"main"}
	if d := rt.defaultAgentID(); d != "" && len(rt.agents) > 0 {
		ids = append(ids, d)
	}
	for _, ag := range rt.agents {
		ids = append(ids, ag.id)
	}
	var norm []string
	for _, id := range uniqueStrings(ids) {
		norm = append(norm, normalizeAgentID(id))
	}
	for _, id := range norm {
		agentDir := filepath.Join(c.StateDir, "agents", id, "agent")
		db := filepath.Join(agentDir, "openclaw-agent.sqlite")
		targets := []struct{ path, label string }{
			{filepath.Join(agentDir, "auth-profiles.json"), "legacy auth-profiles.json"},
			{db, "auth profile SQLite store"},
			{db + "-wal", "auth profile SQLite store"},
			{db + "-shm", "auth profile SQLite store"},
		}
		for _, t := range targets {
			pr := a.inspect(t.path)
			if !pr.ok {
				continue
			}
			switch {
			case pr.worldWritable() || pr.groupWritable():
				a.add("fs.auth_profiles.perms_writable", SeverityCritical, t.label+" is writable by others", permDetail(t.path, pr)+"; another user could inject credentials.", chmodRemediation(t.path, 0o600))
			case pr.worldReadable() || pr.groupReadable():
				a.add("fs.auth_profiles.perms_readable", SeverityWarn, t.label+" is readable by others", permDetail(t.path, pr)+"; auth profile storage contains API keys and OAuth tokens.", chmodRemediation(t.path, 0o600))
			}
		}
		store := filepath.Join(c.StateDir, "agents", id, "sessions", "sessions.json")
		if pr := a.inspect(store); pr.ok && (pr.worldReadable() || pr.groupReadable()) {
			a.add("fs.sessions_store.perms_readable", SeverityWarn, "sessions.json is readable by others", permDetail(store, pr)+"; routing and transcript metadata can be sensitive.", chmodRemediation(store, 0o600))
		}
	}
	if lf := trimmed(rt.get("logging", "file")); lf != "" {
		expanded := lf
		ok := true
		if strings.HasPrefix(lf, "~") {
			home := strings.TrimSpace(c.Getenv("HOME"))
			switch {
			case home == "":
				ok = false
			case lf == "~":
				expanded = home
			case strings.HasPrefix(lf, "~/"):
				expanded = filepath.Join(home, lf[2:])
			default:
				ok = false
			}
		}
		if ok {
			p, _ := filepath.Abs(expanded)
			if pr := a.inspect(p); pr.ok && (pr.worldReadable() || pr.groupReadable()) {
				a.add("fs.log_file.perms_readable", SeverityWarn, "Log file is readable by others", permDetail(p, pr)+"; logs can contain private messages and tool output.", chmodRemediation(p, 0o600))
			}
		}
	}
}

// workspaceDirs lists the agents' workspaces: explicit ones, else the
// default <state>/workspace (or workspace-<id> for non-default agents).
func (rt *runtime) workspaceDirs() []string {
	var out []string
	def := trimmed(rt.get("agents", "defaults", "workspace"))
	defaultID := rt.defaultAgentID()
	for _, ag := range rt.agents {
		ws := trimmed(ag.m["workspace"])
		switch {
		case ws != "":
		case normalizeAgentID(ag.id) == defaultID || defaultID == "" && len(rt.agents) == 1:
			switch {
			case def != "":
				ws = def
			case rt.homeWorkspace:
				ws = filepath.Join(rt.cfg.home, ".openclaw", "workspace")
			case strings.TrimSpace(rt.cfg.Getenv("OPENCLAW_WORKSPACE_DIR")) != "":
				ws = strings.TrimSpace(rt.cfg.Getenv("OPENCLAW_WORKSPACE_DIR"))
			default:
				ws = filepath.Join(rt.cfg.StateDir, "workspace")
			}
		default:
			if def != "" {
				ws = filepath.Join(def, normalizeAgentID(ag.id))
			} else {
				ws = filepath.Join(rt.cfg.StateDir, "workspace-"+normalizeAgentID(ag.id))
			}
		}
		ws = expandHome(ws, rt.cfg.home)
		if !contains(out, ws) {
			out = append(out, ws)
		}
	}
	return out
}

// workspaceSkillSymlinks is collectWorkspaceSkillSymlinkEscapeFindings.
func (a *auditor) workspaceSkillSymlinks() {
	type escape struct{ ws, skill, real string }
	var escapes []escape
	seen := map[string]bool{}
	for _, ws := range a.rt.workspaceDirs() {
		a.observe(ws, InputMeta)
		a.observe(filepath.Join(ws, "skills"), InputTree)
		wsReal := ws
		if r, err := filepath.EvalSymlinks(ws); err == nil {
			wsReal = r
		}
		scan := a.opts.Skills
		if scan == nil {
			scan = ScanSkills
		}
		sc := scan(ws)
		if sc.Truncated {
			a.add("skills.workspace.scan_truncated", SeverityWarn, "Workspace skill scan reached the directory visit limit",
				fmt.Sprintf("The skills/ directory scan in %s stopped early after reaching the BFS visit cap. Skill files in the unscanned portion of the tree were not checked for symlink escapes.", ws),
				"Flatten or simplify the skills/ directory hierarchy to stay within the scan budget, or move deeply-nested skill collections to a managed skill location.")
		}
		for _, f := range sc.Files {
			if seen[f.Path] {
				continue
			}
			seen[f.Path] = true
			if f.Real == "" {
				escapes = append(escapes, escape{ws, f.Path, "(realpath timed out - symlink target unverifiable)"})
				continue
			}
			if !pathInside(wsReal, f.Real) {
				escapes = append(escapes, escape{ws, f.Path, f.Real})
			}
		}
	}
	if len(escapes) == 0 {
		return
	}
	var rows []string
	for i, e := range escapes {
		if i == 12 {
			break
		}
		rows = append(rows, fmt.Sprintf("- workspace=%s\n  skill=%s\n  realpath=%s", e.ws, e.skill, e.real))
	}
	more := ""
	if len(escapes) > 12 {
		more = fmt.Sprintf("\n- +%d more", len(escapes)-12)
	}
	a.add("skills.workspace.symlink_escape", SeverityWarn, "Workspace skill files resolve outside the workspace root",
		"Detected workspace `skills/**/SKILL.md` paths whose realpath escapes their workspace root:\n"+strings.Join(rows, "\n")+more,
		"Keep workspace skills inside the workspace root (replace symlinked escapes with real in-workspace files), or move trusted shared skills to managed/bundled skill locations.")
}

// SkillScan is what the audit learns from a workspace's skills/ tree.
type SkillScan struct {
	// Files are the SKILL.md files found, with their real paths.
	Files []SkillFile
	// Truncated reports whether the walk stopped at its directory visit cap.
	Truncated bool
}

// SkillFile is one SKILL.md under a workspace's skills/ tree.
type SkillFile struct {
	Path string
	Real string // "" when the real path could not be resolved
}

// ScanSkills walks <workspace>/skills as OpenClaw's audit does and resolves
// the real path of every SKILL.md found.
func ScanSkills(workspace string) SkillScan {
	files, truncated := listSkillFiles(workspace)
	sc := SkillScan{Truncated: truncated, Files: make([]SkillFile, 0, len(files))}
	for _, f := range files {
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			real = ""
		}
		sc.Files = append(sc.Files, SkillFile{Path: f, Real: real})
	}
	return sc
}

// listSkillFiles walks <ws>/skills breadth-first for SKILL.md files by
// skilltree's rule, with OpenClaw's caps (2000 files, 40000 directory visits).
func listSkillFiles(ws string) ([]string, bool) {
	root := filepath.Join(ws, "skills")
	if st, err := os.Lstat(root); err != nil || !st.IsDir() {
		return nil, false
	}
	const maxFiles, maxVisits = 2000, 40000
	var files []string
	queue := []string{root}
	visited := map[string]bool{}
	for i := 0; i < maxVisits && len(queue) > 0 && len(files) < maxFiles; i++ {
		dir := queue[0]
		queue = queue[1:]
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			real, _ = filepath.Abs(dir)
		}
		if visited[real] {
			continue
		}
		visited[real] = true
		dirs, skills := skilltree.Read(dir)
		queue = append(queue, dirs...)
		files = append(files, skills...)
	}
	return files, len(queue) > 0
}

// pluginsTrust covers the parts of collectPluginsTrustFindings that the
// filesystem decides: installed extensions without plugins.allow, and
// extension tools reachable under permissive policies. Install records live
// in OpenClaw's SQLite state and are out of scope.
func (a *auditor) pluginsTrust() {
	rt := a.rt
	extDir := filepath.Join(rt.cfg.StateDir, "extensions")
	a.observe(extDir, InputDir)
	st, err := os.Stat(extDir)
	if err != nil || !st.IsDir() {
		return
	}
	entries, _ := os.ReadDir(extDir)
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n := strings.ToLower(strings.TrimSpace(e.Name()))
		if n == "" || n == "node_modules" || n == ".openclaw-install-backups" || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".bak") || strings.Contains(n, ".backup-") || strings.Contains(n, ".disabled") {
			continue
		}
		dirs = append(dirs, e.Name())
	}
	if len(dirs) == 0 {
		return
	}
	allowConfigured := len(arr(rt.get("plugins", "allow"))) > 0
	if !allowConfigured {
		a.add("plugins.extensions_no_allowlist", SeverityWarn, "Extensions exist but plugins.allow is not set",
			fmt.Sprintf("Found %d extension(s) under %s. Without plugins.allow, any discovered plugin id may load (depending on config and plugin behavior).", len(dirs), extDir),
			"Set plugins.allow to an explicit list of plugin ids you trust.")
	}
	var enabled []string
	for _, d := range dirs {
		if id := strings.ToLower(strings.TrimSpace(d)); rt.pluginAllowed(id) {
			enabled = append(enabled, id)
		}
	}
	if len(enabled) == 0 {
		return
	}
	var permissive []string
	contexts := append([]toolContext{{label: "default"}}, rt.agentToolContexts()[1:]...)
	for _, c := range contexts {
		profile := c.tools["profile"]
		if profile == nil {
			profile = rt.get("tools", "profile")
		}
		restrictive := rt.profilePolicy(profile, nil) != nil
		mode := rt.sandboxMode(c.agentID)
		pols := []*toolPolicy{rt.profilePolicy(profile, nil), pickToolPolicy(obj(rt.get("tools"))), pickToolPolicy(c.tools)}
		if mode == "all" {
			pols = append(pols, rt.sandboxToolPolicy(c.agentID))
		}
		broad := allowedByAll("__openclaw_plugin_probe__", pols)
		explicit := !restrictive && (hasPluginAllow(obj(rt.get("tools")), enabled) || hasPluginAllow(c.tools, enabled))
		if broad || explicit {
			permissive = append(permissive, c.label)
		}
	}
	if len(permissive) > 0 {
		a.add("plugins.tools_reachable_permissive_policy", SeverityWarn, "Extension plugin tools may be reachable under permissive tool policy",
			fmt.Sprintf("Enabled extension plugins: %s.\nPermissive tool policy contexts:\n%s", strings.Join(enabled, ", "), bulletList(permissive)),
			"Use restrictive profiles (`minimal`/`coding`) or explicit tool allowlists that exclude plugin tools for agents handling untrusted input.")
	}
}

func hasPluginAllow(tools map[string]any, enabled []string) bool {
	check := func(section map[string]any) bool {
		for _, k := range []string{"allow", "alsoAllow"} {
			for _, e := range stringItems(section[k]) {
				if t := strings.ToLower(strings.TrimSpace(e)); t == "group:plugins" || contains(enabled, t) {
					return true
				}
			}
		}
		return false
	}
	if check(tools) {
		return true
	}
	for _, p := range obj(tools["byProvider"]) {
		if check(obj(p)) {
			return true
		}
	}
	return false
}

func mcporterRegistryPath(stateDir string) string {
	return filepath.Join(stateDir, "skills", "config", "mcporter.json")
}

// readMcporterRegistry reads <state>/skills/config/mcporter.json: status
// "absent", "source" (with server names) or "rejected" (with the reason).
func readMcporterRegistry(stateDir string) ([]string, string) {
	p := mcporterRegistryPath(stateDir)
	st, err := os.Stat(p)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, "absent"
		}
		return []string{"unreadable"}, "rejected"
	}
	if !st.Mode().IsRegular() {
		return []string{"not a regular file"}, "rejected"
	}
	if st.Size() > 16<<20 {
		return []string{"larger than the 16 MiB audit cap"}, "rejected"
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return []string{"unreadable"}, "rejected"
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return []string{"not valid JSON"}, "rejected"
	}
	var names []string
	for name, s := range obj(get(v, "mcpServers")) {
		if !isFalse(get(s, "enabled")) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, "absent"
	}
	sort.Strings(names)
	return names, "source"
}

// Sandbox bind-mount policy (src/agents/sandbox/validate-sandbox-security.ts).
var (
	blockedHostPaths    = []string{"/etc", "/private/etc", "/proc", "/sys", "/dev", "/root", "/boot", "/run", "/var/run", "/private/var/run", "/var/run/docker.sock", "/private/var/run/docker.sock", "/run/docker.sock"}
	blockedHomeSubpaths = []string{".aws", ".cargo", ".config", ".docker", ".gnupg", ".netrc", ".npm", ".ssh"}
)

// blockedBindReason returns "non_absolute", "covers" or "targets" with the
// path concerned, or "" when the bind's source is acceptable.
func blockedBindReason(bind, home string) (string, string) {
	source := bind
	if i := strings.IndexByte(bind, ':'); i >= 0 {
		source = bind[:i]
	}
	if !strings.HasPrefix(source, "/") {
		return "non_absolute", source
	}
	blocked := append([]string{}, blockedHostPaths...)
	for _, h := range homeRoots(home) {
		for _, sub := range blockedHomeSubpaths {
			blocked = append(blocked, path.Join(h, sub))
		}
	}
	norm := normalizeHostPath(source)
	if k, p := blockedReasonFor(norm, blocked); k != "" {
		return k, p
	}
	if canon := resolveViaExistingAncestor(norm); canon != norm {
		return blockedReasonFor(canon, blocked)
	}
	return "", ""
}

func homeRoots(home string) []string {
	var out []string
	if home == "" {
		return nil
	}
	n := normalizeHostPath(home)
	if n != "/" {
		out = append(out, n)
	}
	if c := resolveViaExistingAncestor(n); c != "/" && c != n {
		out = append(out, c)
	}
	return out
}

func blockedReasonFor(src string, blocked []string) (string, string) {
	if src == "/" {
		return "covers", "/"
	}
	for _, b := range blocked {
		if policyPathInside(b, src) {
			return "targets", b
		}
		if policyPathInside(src, b) {
			return "covers", b
		}
	}
	return "", ""
}

func policyPathInside(base, p string) bool {
	return p == base || strings.HasPrefix(p, strings.TrimSuffix(base, "/")+"/")
}

func normalizeHostPath(p string) string {
	n := strings.TrimRight(path.Clean(p), "/")
	if n == "" {
		return "/"
	}
	return n
}

// resolveViaExistingAncestor resolves symlinks in the deepest existing
// ancestor and re-appends the rest.
func resolveViaExistingAncestor(p string) string {
	cur := p
	var rest []string
	for {
		if real, err := filepath.EvalSymlinks(cur); err == nil {
			return normalizeHostPath(path.Join(append([]string{real}, rest...)...))
		}
		parent := path.Dir(cur)
		if parent == cur {
			return p
		}
		rest = append([]string{path.Base(cur)}, rest...)
		cur = parent
	}
}

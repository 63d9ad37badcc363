package audit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// OpenClaw checks some rules in code (Zod superRefine) that its published
// JSON Schema cannot carry. These are the ones clawgate repeats, each found
// in OpenClaw's own source and confirmed against `openclaw config validate`
// by the invalid corpus (testdata/invalid). Messages are OpenClaw's, word for
// word, except that a value a caller must not see is left out.
//
// Zod runs an object's refinement only once the object itself parsed, so a
// refinement is skipped where the schema already reported an issue at or
// under that object.

// refinementIssues returns OpenClaw's code-level issues for a merged config.
func refinementIssues(tree map[string]any, schemaIssues []Issue) []Issue {
	parsed := func(path string) bool {
		for _, i := range schemaIssues {
			if i.Path == path || strings.HasPrefix(i.Path, path+".") || i.Path == "<root>" && path == "" {
				return false
			}
		}
		return true
	}
	var out []Issue
	agents := obj(tree["agents"])
	type sandbox struct {
		base string
		sb   map[string]any
	}
	var sandboxes []sandbox
	if d := obj(obj(agents["defaults"])["sandbox"]); d != nil {
		sandboxes = append(sandboxes, sandbox{"agents.defaults.sandbox", d})
	}
	entries := obj(agents["entries"])
	for _, id := range keys(entries) {
		if s := obj(obj(entries[id])["sandbox"]); s != nil {
			sandboxes = append(sandboxes, sandbox{"agents.entries." + id + ".sandbox", s})
		}
	}
	for _, s := range sandboxes {
		if docker := obj(s.sb["docker"]); docker != nil && parsed(s.base+".docker") {
			out = append(out, dockerRefinements(s.base+".docker", docker)...)
		}
		if browser := obj(s.sb["browser"]); browser != nil && parsed(s.base+".browser") {
			out = append(out, browserRefinements(s.base+".browser", browser)...)
		}
	}
	if gw := obj(tree["gateway"]); gw != nil && parsed("gateway") {
		out = append(out, gatewayRefinements(gw)...)
	}
	return out
}

// dockerRefinements is OpenClaw's SandboxDockerSchema refinement.
func dockerRefinements(base string, docker map[string]any) []Issue {
	out := bindIssues(base, docker["binds"])
	network := strings.ToLower(trimmed(docker["network"]))
	switch {
	case network == "host":
		out = append(out, Issue{Path: base + ".network", Message: `Sandbox security: network mode "host" is blocked. Use "bridge" or "none" instead.`})
	case strings.HasPrefix(network, "container:") && docker["dangerouslyAllowContainerNamespaceJoin"] != true:
		out = append(out, Issue{Path: base + ".network", Message: `Sandbox security: network mode "container:*" is blocked by default. Use a custom bridge network, or set dangerouslyAllowContainerNamespaceJoin=true only when you fully trust this runtime.`})
	}
	if strings.ToLower(trimmed(docker["seccompProfile"])) == "unconfined" {
		out = append(out, Issue{Path: base + ".seccompProfile", Message: `Sandbox security: seccomp profile "unconfined" is blocked. Use a custom seccomp profile file or omit this setting.`})
	}
	if strings.ToLower(trimmed(docker["apparmorProfile"])) == "unconfined" {
		out = append(out, Issue{Path: base + ".apparmorProfile", Message: `Sandbox security: AppArmor profile "unconfined" is blocked. Use a named AppArmor profile or omit this setting.`})
	}
	return out
}

// browserRefinements is OpenClaw's SandboxBrowserSchema refinement.
func browserRefinements(base string, browser map[string]any) []Issue {
	out := bindIssues(base, browser["binds"])
	if strings.ToLower(trimmed(browser["network"])) == "host" {
		out = append(out, Issue{Path: base + ".network", Message: `Sandbox security: browser network mode "host" is blocked. Use "bridge" or a custom bridge network instead.`})
	}
	return out
}

var windowsDrivePath = regexp.MustCompile(`^[A-Za-z]:[\\/]`)

// bindIssues is OpenClaw's validateSandboxBindEntries: every bind is
// non-blank and its host side is an absolute POSIX or Windows drive path.
func bindIssues(base string, v any) []Issue {
	binds, _ := v.([]any)
	var out []Issue
	for i, b := range binds {
		bind, _ := b.(string)
		path := base + ".binds." + strconv.Itoa(i)
		if strings.TrimSpace(bind) == "" {
			out = append(out, Issue{Path: path, Message: "Sandbox security: bind mount entry must be a non-empty string."})
			continue
		}
		source := bind
		sep := strings.Index(bind, ":")
		if windowsDrivePath.MatchString(bind) {
			if j := strings.Index(bind[2:], ":"); j >= 0 {
				sep = j + 2
			} else {
				sep = -1
			}
		}
		if sep >= 0 {
			source = bind[:sep]
		}
		if !sandboxHostPathAbsolute(source) {
			out = append(out, Issue{Path: path, Message: fmt.Sprintf("Sandbox security: bind mount %s uses a non-absolute source path %s. Only absolute POSIX or Windows drive-letter paths are supported for sandbox binds.", jsQuote(bind), jsQuote(source))})
		}
	}
	return out
}

func sandboxHostPathAbsolute(raw string) bool {
	in := raw
	for _, prefix := range []string{`\\?\`, "//?/"} {
		if rest, ok := strings.CutPrefix(in, prefix); ok {
			if strings.HasPrefix(strings.ToUpper(rest), "UNC"+prefix[3:]) {
				rest = prefix[:2] + rest[4:]
			}
			in = rest
			break
		}
	}
	return strings.HasPrefix(in, "/") || windowsDrivePath.MatchString(in)
}

// gatewayRefinements is the part of OpenClaw's gateway refinement that
// needs no URL parsing: the portal ingress port must differ from the
// gateway's own.
func gatewayRefinements(gw map[string]any) []Issue {
	ingress := obj(obj(gw["portals"])["ingress"])
	if ingress == nil {
		return nil
	}
	port := 18789.0
	if p, ok := gw["port"].(float64); ok {
		port = p
	}
	if p, ok := ingress["port"].(float64); ok && p == port {
		return []Issue{{Path: "gateway.portals.ingress.port", Message: "Portal ingress port must differ from the Gateway port"}}
	}
	return nil
}

// jsQuote quotes as a JavaScript template literal with "${…}" does for
// plain text: no escaping.
func jsQuote(s string) string { return `"` + s + `"` }

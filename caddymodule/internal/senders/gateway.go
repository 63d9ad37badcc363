package senders

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// This file reads what a webhook route needs from the fronted gateway's own config: the
// allowlists OpenClaw keeps per channel in openclaw.json, and the header its trusted-proxy mode
// reads the user from. The tree is the parsed config (JSON5 read, $include and ${VAR} resolved);
// values of the wrong shape count as absent, as OpenClaw's own readers treat them.

// GatewayLists reads one channel's sender and group allowlists from an OpenClaw config tree, as
// OpenClaw applies them: channels.<channel>.allowFrom, the legacy dm.allowFrom and, unless the
// group policy (the channel's groupPolicy, else channels.defaults.groupPolicy) is "disabled",
// groupAllowFrom; for Telegram also the keys of groups (the group allowlist, replaced by "*"
// when the policy is "open") and each group's allowFrom. With account set, the keys of
// channels.<channel>.accounts.<account> override the channel's own, as OpenClaw merges them.
//
// route is the webhook route the lists are for (its Allow and GroupAllow are ignored): only
// entries its provider accepts are returned; skipped holds the others, such as Telegram
// @usernames, which OpenClaw does not honour either. Ids written as JSON numbers count when
// they are integers.
func GatewayLists(tree map[string]any, channel, account string, route Config) (allow, groups, skipped []string) {
	chans := object(tree["channels"])
	ch := object(chans[channel])
	var acct map[string]any
	if account != "" {
		acct = object(object(ch["accounts"])[account])
	}
	get := func(key string) any {
		if v, ok := acct[key]; ok {
			return v
		}
		return ch[key]
	}
	addSenders := func(v any) {
		for _, e := range entries(v, &skipped) {
			if acceptsEntry(route, e, false) {
				allow = append(allow, e)
			} else {
				skipped = append(skipped, e)
			}
		}
	}

	addSenders(get("allowFrom"))
	addSenders(object(get("dm"))["allowFrom"])

	policy, _ := get("groupPolicy").(string)
	if policy == "" {
		policy, _ = object(chans["defaults"])["groupPolicy"].(string)
	}
	if policy == "disabled" {
		return allow, nil, skipped
	}
	addSenders(get("groupAllowFrom"))
	if route.Provider != Telegram {
		return allow, nil, skipped
	}
	if policy == "open" {
		groups = append(groups, "*")
	}
	gmap := object(get("groups"))
	ids := slices.Sorted(maps.Keys(gmap))
	for _, id := range ids {
		addSenders(object(gmap[id])["allowFrom"])
		if policy == "open" {
			continue
		}
		if acceptsEntry(route, id, true) {
			groups = append(groups, id)
		} else {
			skipped = append(skipped, id)
		}
	}
	return allow, groups, skipped
}

// GatewayUserHeader returns gateway.auth.trustedProxy.userHeader of an OpenClaw config tree, or
// "" when it is not set.
func GatewayUserHeader(tree map[string]any) string {
	uh, _ := object(object(object(object(tree["gateway"])["auth"])["trustedProxy"]))["userHeader"].(string)
	return uh
}

// MergeEntries returns the entries of a and then b, trimmed, without blanks and repeats.
func MergeEntries(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for _, e := range slices.Concat(a, b) {
		if e = strings.TrimSpace(e); e != "" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// AdmitsAll reports whether entries hold "*", the entry that admits every authentic sender (or
// group), as New reads it.
func AdmitsAll(entries []string) bool {
	return slices.ContainsFunc(entries, func(e string) bool { return strings.TrimSpace(e) == "*" })
}

// acceptsEntry reports whether route's provider accepts e as a sender entry or, with group, as
// a Telegram group entry.
func acceptsEntry(route Config, e string, group bool) bool {
	if group {
		route.Allow, route.GroupAllow = []string{"*"}, []string{e}
	} else {
		route.Allow, route.GroupAllow = []string{e}, nil
	}
	_, err := New(route)
	return err == nil
}

// object returns v as a JSON object, or nil.
func object(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// entries returns the strings and integral numbers of a JSON array (OpenClaw accepts ids written
// as numbers); other elements go to skipped.
func entries(v any, skipped *[]string) []string {
	arr, _ := v.([]any)
	var out []string
	for _, e := range arr {
		switch e := e.(type) {
		case string:
			out = append(out, e)
		case float64:
			if e == math.Trunc(e) && math.Abs(e) <= 1<<53 {
				out = append(out, strconv.FormatFloat(e, 'f', -1, 64))
			} else {
				*skipped = append(*skipped, fmt.Sprint(e))
			}
		default:
			*skipped = append(*skipped, fmt.Sprint(e))
		}
	}
	return out
}

package senders

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// routeFor returns a route of the provider as the tables of its own tests
// configure it, without its allowlists: what GatewayLists reads them for.
func routeFor(t testing.TB, p Provider) Config {
	t.Helper()
	secret := newSecret(t)
	var c Config
	switch p {
	case Telegram:
		c = telegramConfig(secret)
	case Slack:
		c = slackConfig(secret)
	case LINE:
		c = lineConfig(secret)
	case Generic:
		c = waConfig(secret, nil)
	default:
		t.Fatalf("no route for provider %q", p)
	}
	c.Allow, c.GroupAllow = nil, nil
	return c
}

func TestGatewayLists(t *testing.T) {
	tests := []struct {
		name             string
		provider         Provider
		channel, account string
		tree             string
		allow, groups    []string
		skipped          []string
	}{
		{"telegram lists, numbers and prefixes", Telegram, "telegram", "",
			`{"channels":{"telegram":{"allowFrom":[111,"tg:222"," 333 ","@alice",1.5],"groupAllowFrom":["444"],"dm":{"allowFrom":["555"]},"groups":{"-1001":{"allowFrom":[666]},"-1002":{},"12":{}}}}}`,
			[]string{"111", "tg:222", " 333 ", "555", "444", "666"}, []string{"-1001", "-1002"}, []string{"1.5", "@alice", "12"}},
		{"telegram open groups", Telegram, "telegram", "",
			`{"channels":{"telegram":{"allowFrom":["111"],"groupPolicy":"open","groups":{"-1001":{}}}}}`,
			[]string{"111"}, []string{"*"}, nil},
		{"telegram groups disabled by default policy", Telegram, "telegram", "",
			`{"channels":{"defaults":{"groupPolicy":"disabled"},"telegram":{"allowFrom":["111"],"groupAllowFrom":["222"],"groups":{"-1001":{}}}}}`,
			[]string{"111"}, nil, nil},
		{"channel policy wins over the default", Telegram, "telegram", "",
			`{"channels":{"defaults":{"groupPolicy":"disabled"},"telegram":{"groupPolicy":"allowlist","groupAllowFrom":["222"],"groups":{"-1001":{}}}}}`,
			[]string{"222"}, []string{"-1001"}, nil},
		{"account overrides the channel", Telegram, "telegram", "work",
			`{"channels":{"telegram":{"allowFrom":["111"],"groupAllowFrom":["222"],"accounts":{"work":{"allowFrom":["333"]}}}}}`,
			[]string{"333", "222"}, nil, nil},
		{"missing account falls back to the channel", Telegram, "telegram", "home",
			`{"channels":{"telegram":{"allowFrom":["111"]}}}`,
			[]string{"111"}, nil, nil},
		{"star is kept", Telegram, "telegram", "",
			`{"channels":{"telegram":{"dmPolicy":"open","allowFrom":["*"]}}}`,
			[]string{"*"}, nil, nil},
		{"slack ids, groups ignored", Slack, "slack", "",
			`{"channels":{"slack":{"allowFrom":["U0ALICE","slack:U0BOB","alice"],"groupAllowFrom":["W0CAROL"],"groups":{"C0123":{}}}}}`,
			[]string{"U0ALICE", "slack:U0BOB", "W0CAROL"}, nil, []string{"alice"}},
		{"line ids", LINE, "line", "",
			`{"channels":{"line":{"allowFrom":["` + lineAlice + `","line:user:` + lineMallory + `","Ushort",true]}}}`,
			[]string{lineAlice, "line:user:" + lineMallory}, nil, []string{"true", "Ushort"}},
		{"generic route reads the named channel", Generic, "whatsapp", "",
			`{"channels":{"whatsapp":{"allowFrom":["+1 631 555 1234","not a number"]},"generic":{"allowFrom":["` + waMallory + `"]}}}`,
			[]string{"+1 631 555 1234"}, nil, []string{"not a number"}},
		{"no channel block", LINE, "line", "", `{"gateway":{}}`, nil, nil, nil},
		{"wrong shapes", Telegram, "telegram", "", `{"channels":{"telegram":{"allowFrom":"111","groups":[1]}}}`, nil, nil, nil},
		{"huge numbers are skipped", Telegram, "telegram", "", `{"channels":{"telegram":{"allowFrom":[1e300,-5]}}}`, []string{"-5"}, nil, []string{"1e+300"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tree map[string]any
			if err := json.Unmarshal([]byte(tt.tree), &tree); err != nil {
				t.Fatal(err)
			}
			allow, groups, skipped := GatewayLists(tree, tt.channel, tt.account, routeFor(t, tt.provider))
			if fmt.Sprint(allow) != fmt.Sprint(tt.allow) || fmt.Sprint(groups) != fmt.Sprint(tt.groups) || fmt.Sprint(skipped) != fmt.Sprint(tt.skipped) {
				t.Errorf("GatewayLists = allow %q groups %q skipped %q, want %q %q %q", allow, groups, skipped, tt.allow, tt.groups, tt.skipped)
			}
		})
	}
}

// TestGatewayListsBuildChecker checks that the lists read from a config
// build a Checker that admits the senders on them and no one else.
func TestGatewayListsBuildChecker(t *testing.T) {
	var tree map[string]any
	if err := json.Unmarshal([]byte(`{"channels":{"telegram":{"allowFrom":[`+tgAlice+`,"@mallory"],"groups":{"`+tgGroup+`":{}}}}}`), &tree); err != nil {
		t.Fatal(err)
	}
	route := routeFor(t, Telegram)
	route.Allow, route.GroupAllow, _ = GatewayLists(tree, "telegram", "", route)
	chk, err := New(route)
	if err != nil {
		t.Fatalf("New(lists from the config) = %v", err)
	}
	for _, tc := range []struct {
		body string
		want bool
	}{{tgPrivateMessage, true}, {tgGroupMessage, true}, {strings.ReplaceAll(tgPrivateMessage, tgAlice, tgMallory), false}} {
		if got := chk.Check(tgHeader(route.Secret), []byte(tc.body), time.Now()).Allowed; got != tc.want {
			t.Errorf("Check(%.60q…) allowed = %v, want %v", tc.body, got, tc.want)
		}
	}
}

func TestGatewayUserHeader(t *testing.T) {
	tests := []struct {
		tree, want string
	}{
		{`{"gateway":{"auth":{"trustedProxy":{"userHeader":"x-pomerium-claim-email"}}}}`, "x-pomerium-claim-email"},
		{`{"gateway":{"auth":{"trustedProxy":{}}}}`, ""},
		{`{"gateway":{"auth":{"trustedProxy":{"userHeader":7}}}}`, ""},
		{`{"gateway":{"auth":"token"}}`, ""},
		{`{}`, ""},
	}
	for _, tt := range tests {
		var tree map[string]any
		if err := json.Unmarshal([]byte(tt.tree), &tree); err != nil {
			t.Fatal(err)
		}
		if got := GatewayUserHeader(tree); got != tt.want {
			t.Errorf("GatewayUserHeader(%s) = %q, want %q", tt.tree, got, tt.want)
		}
	}
	if got := GatewayUserHeader(nil); got != "" {
		t.Errorf("GatewayUserHeader(nil) = %q, want empty", got)
	}
}

func TestMergeEntries(t *testing.T) {
	tests := []struct {
		a, b, want []string
	}{
		{nil, nil, []string{}},
		{[]string{" 1 ", "2"}, []string{"2", "3", ""}, []string{"1", "2", "3"}},
		{[]string{"b", "a"}, []string{"a", " b", "c"}, []string{"b", "a", "c"}},
	}
	for _, tt := range tests {
		a := slices.Clone(tt.a)
		if got := MergeEntries(tt.a, tt.b); !slices.Equal(got, tt.want) {
			t.Errorf("MergeEntries(%q, %q) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
		if !slices.Equal(a, tt.a) {
			t.Errorf("MergeEntries changed its first argument to %q", tt.a)
		}
	}
}

func TestAdmitsAll(t *testing.T) {
	tests := []struct {
		entries []string
		want    bool
	}{
		{nil, false},
		{[]string{"1", "2"}, false},
		{[]string{"1", " * "}, true},
		{[]string{"**"}, false},
	}
	for _, tt := range tests {
		if got := AdmitsAll(tt.entries); got != tt.want {
			t.Errorf("AdmitsAll(%q) = %v, want %v", tt.entries, got, tt.want)
		}
	}
}

// FuzzGatewayLists reads arbitrary JSON as an OpenClaw config: whatever the
// shape, every entry returned must build a Checker for the route.
func FuzzGatewayLists(f *testing.F) {
	f.Add(`{"channels":{"telegram":{"allowFrom":[111,"tg:222","@alice",1.5],"groupAllowFrom":["444"],"groups":{"-1001":{"allowFrom":[666]},"12":{}}}}}`, "")
	f.Add(`{"channels":{"defaults":{"groupPolicy":"open"},"telegram":{"accounts":{"work":{"allowFrom":["*"],"groups":{"-5":null}}}}}}`, "work")
	f.Add(`{"channels":{"telegram":{"dm":{"allowFrom":[true,null,{},[]]},"groups":[]}}}`, "")
	route := routeFor(f, Telegram)
	f.Fuzz(func(t *testing.T, config, account string) {
		var tree map[string]any
		if json.Unmarshal([]byte(config), &tree) != nil {
			return
		}
		allow, groups, _ := GatewayLists(tree, "telegram", account, route)
		c := route
		c.Allow, c.GroupAllow = allow, groups
		if len(c.Allow) == 0 {
			c.Allow = []string{"*"}
		}
		if _, err := New(c); err != nil {
			t.Fatalf("lists %q %q from %s do not build a Checker: %v", allow, groups, config, err)
		}
	})
}

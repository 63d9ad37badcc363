#!/usr/bin/env bash
# audit-corpus.sh keeps clawgate's OpenClaw audit honest against the real `openclaw security audit`.
#
#   scripts/audit-corpus.sh record [case...]   run the real CLI on each case (all when none named) and
#                                              write <case>/expected.json
#   scripts/audit-corpus.sh check [N] [case...] re-run the real CLI on N random cases (default 3), or on
#                                              the named ones; fail when its (checkId, severity) set
#                                              differs from expected.json
#   scripts/audit-corpus.sh bench [runs]       time the real CLI (default 3 runs) and `go test -bench
#                                              BenchmarkAudit` on the same config; print both and the ratio
#   scripts/audit-corpus.sh list               list the cases
#   scripts/audit-corpus.sh record-validate [case...]
#                                              run the real `openclaw config validate --json` on each
#                                              case of both halves (all when none named): an invalid
#                                              case (testdata/invalid/<case>) gets expected.json, a
#                                              corpus case validate.json
#
# `check` also compares the selected line's published config schema with the one recorded for it
# (scripts/openclaw-schema.sh check VERSION) and, on the pinned line, re-validates N random invalid
# cases.
#
# A case is caddymodule/internal/audit/testdata/corpus/<case>/ holding openclaw.json (JSON5; may
# $include sibling files), an optional setup.json and the recorded expected.json. Each run builds the
# case in a fresh temp dir: <tmp>/state is the state dir, the case's files are copied into it (the
# config is <tmp>/state/openclaw.json), then setup.json is applied:
#   {"config_mode":"0600", "state_dir_mode":"0700", "include_mode":"0600",
#    "files":{"credentials/x.json":{"mode":"0644","content":"{}"}}, "dirs":{"credentials":"0755"},
#    "symlinks":{"openclaw.json":"real/openclaw.json"}, "env":{"VAR":"v"}}
# (paths relative to the state dir; a symlink entry moves an existing file to the target first). The
# audit runs with an empty environment apart from PATH, audit_env and setup.json's env; the temp dir's path is
# replaced by $ROOT in the recorded output. TestCorpus (go test ./caddymodule/internal/audit) builds
# cases the same way.
#
# With CLAWGATE_OPENCLAW_VERSION naming another release line than the pinned one, record and check use
# that line's real CLI and its own records, caddymodule/internal/release/testdata/corpus/<VERSION>/
# <case>.json: the audits of older lines differ from the pinned one's in places, and clawgate's own
# audit follows each line (TestCorpusLines compares it with these records). check picks among the
# cases recorded for that line.
#
# Configuring a channel whose plugin is not bundled (discord, slack, whatsapp) or some model providers
# makes the real CLI npm-install the plugin into the state dir while it audits. The corpus points npm
# at an unreachable registry instead, so that install fails at once and the same way everywhere: runs
# stay offline, fast and reproducible, and the audit reports what it reports for a gateway whose plugin
# is not installed yet (no plugins.installs_* findings, which clawgate cannot see anyway: OpenClaw
# keeps install records in SQLite).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
corpus=$repo/caddymodule/internal/audit/testdata/corpus
openclaw=$repo/scripts/openclaw.sh
pinned=$("$openclaw" lines | sed -n 1p) # sed reads it all: head could leave the writer a SIGPIPE
line=${CLAWGATE_OPENCLAW_VERSION:-$pinned}

die() {
	echo "audit-corpus.sh: $*" >&2
	exit 1
}

# node_bin finds the pinned Node that openclaw.sh installed; it parses JSON so the script needs no jq.
node_bin() {
	local envlines
	envlines=$("$openclaw" env) || die "OpenClaw is not installed; run: scripts/openclaw.sh install"
	(eval "$envlines" && command -v node)
}

# build_case <case-dir> <tmp>: lay the case out under <tmp>/state and print the env assignments
# (NAME=value, one per line) that setup.json asks for.
build_case() {
	"$NODE" - "$1" "$2" <<'EOF'
const fs = require("fs"), path = require("path");
const [caseDir, tmp] = process.argv.slice(2);
const state = path.join(tmp, "state");
const setupPath = path.join(caseDir, "setup.json");
const setup = fs.existsSync(setupPath) ? JSON.parse(fs.readFileSync(setupPath, "utf8")) : {};
const mode = (s, d) => parseInt(s ?? d, 8);
fs.mkdirSync(state, { recursive: true });
for (const name of fs.readdirSync(caseDir)) {
  if (name === "setup.json" || name === "expected.json" || name === "validate.json") continue;
  const src = path.join(caseDir, name);
  if (!fs.statSync(src).isFile()) continue;
  const dst = path.join(state, name);
  fs.copyFileSync(src, dst);
  fs.chmodSync(dst, name === "openclaw.json" ? mode(setup.config_mode, "0600") : mode(setup.include_mode, "0600"));
}
for (const [rel, m] of Object.entries(setup.dirs ?? {})) {
  const p = path.join(state, rel);
  fs.mkdirSync(p, { recursive: true });
  fs.chmodSync(p, mode(m, "0700"));
}
for (const [rel, f] of Object.entries(setup.files ?? {})) {
  const p = path.join(state, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, f.content ?? "");
  fs.chmodSync(p, mode(f.mode, "0600"));
}
for (const [link, target] of Object.entries(setup.symlinks ?? {})) {
  const l = path.join(state, link), t = path.join(state, target);
  if (fs.existsSync(l)) {
    fs.mkdirSync(path.dirname(t), { recursive: true });
    fs.renameSync(l, t);
  }
  fs.mkdirSync(path.dirname(l), { recursive: true });
  fs.symlinkSync(path.relative(path.dirname(l), t), l);
}
fs.chmodSync(state, mode(setup.state_dir_mode, "0700"));
for (const [k, v] of Object.entries(setup.env ?? {})) console.log(`${k}=${v}`);
EOF
}

# audit_env is the whole environment of a real audit run, besides PATH and the case's setup.json env.
audit_env=(npm_config_registry=http://127.0.0.1:9/ npm_config_fetch_retries=0 npm_config_fetch_timeout=2000 npm_config_update_notifier=false)

# run_case <case-name> <out-file>: run the real audit on a freshly built case.
run_case() {
	local name=$1 out=$2 tmp rc=0
	tmp=$(mktemp -d)
	tmp=$(cd "$tmp" && pwd -P)
	local envs=()
	mapfile -t envs < <(build_case "$corpus/$name" "$tmp")
	env -i PATH="$PATH" CLAWGATE_OPENCLAW_VERSION="${CLAWGATE_OPENCLAW_VERSION:-}" "${audit_env[@]}" "${envs[@]}" "$openclaw" audit "$tmp/state/openclaw.json" "$tmp/state" >"$tmp/out.json" 2>"$tmp/err.txt" || rc=$?
	if ! "$NODE" -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).findings.length' "$tmp/out.json" >/dev/null 2>&1; then
		echo "audit-corpus.sh: case $name: the real audit failed (exit $rc):" >&2
		head -c 2000 "$tmp/out.json" "$tmp/err.txt" >&2 || true
		rm -rf "$tmp"
		return 1
	fi
	"$NODE" -e '
const fs = require("fs");
const [file, root, out] = process.argv.slice(1);
const text = fs.readFileSync(file, "utf8").split(root).join("$ROOT");
fs.writeFileSync(out, JSON.stringify(JSON.parse(text), null, 2) + "\n");
' "$tmp/out.json" "$tmp" "$out"
	rm -rf "$tmp"
}

# validate_case <case-dir> <out-file>: run the real `openclaw config validate --json` on a freshly
# built case; it exits 1 on an invalid config, so the JSON on stdout is what is judged.
validate_case() {
	local dir=$1 out=$2 tmp rc=0 bin
	bin=$("$openclaw" bin)
	tmp=$(mktemp -d)
	tmp=$(cd "$tmp" && pwd -P)
	local envs=()
	mapfile -t envs < <(build_case "$dir" "$tmp")
	env -i PATH="$PATH" "${audit_env[@]}" "${envs[@]}" HOME="$tmp/home" OPENCLAW_CONFIG_PATH="$tmp/state/openclaw.json" \
		OPENCLAW_STATE_DIR="$tmp/state" NO_COLOR=1 OPENCLAW_NO_AUTO_UPDATE=1 DO_NOT_TRACK=1 \
		"$bin" config validate --json >"$tmp/out.json" 2>"$tmp/err.txt" || rc=$?
	if ! "$NODE" -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); if (typeof r.valid !== "boolean") process.exit(1)' "$tmp/out.json" 2>/dev/null; then
		echo "audit-corpus.sh: ${dir#"$repo"/}: the real validate failed (exit $rc):" >&2
		head -c 2000 "$tmp/out.json" "$tmp/err.txt" >&2 || true
		rm -rf "$tmp"
		return 1
	fi
	"$NODE" -e '
const fs = require("fs");
const [file, root, out] = process.argv.slice(1);
const text = fs.readFileSync(file, "utf8").split(root).join("$ROOT");
fs.writeFileSync(out, JSON.stringify(JSON.parse(text), null, 2) + "\n");
' "$tmp/out.json" "$tmp" "$out"
	rm -rf "$tmp"
}

invalid=$repo/caddymodule/internal/audit/testdata/invalid

list_invalid() {
	local d
	for d in "$invalid"/*/; do
		[[ -f $d/openclaw.json ]] && basename "$d"
	done
}

cmd_record-validate() {
	local names=("$@") name dir out failed=0
	if [[ ${#names[@]} -eq 0 ]]; then
		mapfile -t names < <(list_invalid; list_cases)
	fi
	for name in "${names[@]}"; do
		if [[ -f $invalid/$name/openclaw.json ]]; then
			dir=$invalid/$name out=$dir/expected.json
		elif [[ -f $corpus/$name/openclaw.json ]]; then
			dir=$corpus/$name out=$dir/validate.json
		else
			die "no case $name"
		fi
		if validate_case "$dir" "$out"; then
			echo "recorded $name: $("$NODE" -e 'const r=require(process.argv[1]);console.log(r.valid ? "valid" : (r.issues||[]).map(i=>i.path).join(" "))' "$out")"
		else
			failed=$((failed + 1))
		fi
	done
	((failed == 0)) || die "$failed case(s) failed to record"
}

# expected_for prints where the recorded audit of a case is kept for the selected release line.
expected_for() {
	if [[ $line == "$pinned" ]]; then
		echo "$corpus/$1/expected.json"
	else
		echo "$repo/caddymodule/internal/release/testdata/corpus/$line/$1.json"
	fi
}

list_cases() {
	local d
	for d in "$corpus"/*/; do
		[[ -f $d/openclaw.json ]] && basename "$d"
	done
}

# recorded_cases lists the cases to check for the selected release line: every case for the pinned
# line (one without expected.json is an error), those recorded so far for another.
recorded_cases() {
	local name
	list_cases | while read -r name; do
		if [[ $line == "$pinned" || -f $(expected_for "$name") ]]; then
			echo "$name"
		fi
	done
}

cmd_record() {
	local cases=("$@") name start failed=0
	[[ ${#cases[@]} -gt 0 ]] || mapfile -t cases < <(list_cases)
	for name in "${cases[@]}"; do
		[[ -f $corpus/$name/openclaw.json ]] || die "no case $name"
		start=$SECONDS
		mkdir -p "$(dirname "$(expected_for "$name")")"
		if run_case "$name" "$(expected_for "$name")"; then
			echo "recorded $name ($((SECONDS - start))s): $("$NODE" -e 'const r=require(process.argv[1]);console.log(r.findings.map(f=>f.severity[0]+":"+f.checkId).join(" "))' "$(expected_for "$name")")"
		else
			failed=$((failed + 1))
		fi
	done
	((failed == 0)) || die "$failed case(s) failed to record"
}

cmd_check() {
	local n=${1:-3} name tmp bad=0
	shift || true
	if [[ $# -gt 0 ]]; then
		picked=("$@")
	else
		mapfile -t all < <(recorded_cases)
		[[ ${#all[@]} -gt 0 ]] || die "no cases recorded for OpenClaw $line"
		mapfile -t picked < <(printf '%s\n' "${all[@]}" | shuf -n "$n")
	fi
	tmp=$(mktemp -d)
	# Expanded now: the local is gone by the time the EXIT trap runs.
	trap "rm -rf $(printf %q "$tmp")" EXIT
	for name in "${picked[@]}"; do
		[[ -f $(expected_for "$name") ]] || die "case $name has no recorded audit for OpenClaw $line; run: CLAWGATE_OPENCLAW_VERSION=$line scripts/audit-corpus.sh record $name"
		run_case "$name" "$tmp/$name.json" || { bad=$((bad + 1)); continue; }
		if "$NODE" -e '
const [want, got] = process.argv.slice(1).map((f) => new Set(require(f).findings.map((x) => x.checkId + " " + x.severity)));
const missing = [...want].filter((k) => !got.has(k)), extra = [...got].filter((k) => !want.has(k));
if (missing.length || extra.length) {
  for (const k of missing) console.log("  only in expected.json: " + k);
  for (const k of extra) console.log("  only in this run:      " + k);
  process.exit(1);
}' "$(expected_for "$name")" "$tmp/$name.json"; then
			echo "ok    $name ($line)"
		else
			echo "DRIFT $name"
			bad=$((bad + 1))
		fi
	done
	((bad == 0)) || die "$bad of ${#picked[@]} case(s) differ from the recorded real audit; OpenClaw has drifted (re-record and review)"
	# Every line's schema is recorded; the invalid half for the pinned line only.
	"$repo/scripts/openclaw-schema.sh" check "$line"
	[[ $line == "$pinned" ]] || return 0
	[[ $# -gt 0 ]] && return
	mapfile -t all < <(list_invalid)
	mapfile -t picked < <(printf '%s\n' "${all[@]}" | shuf -n "$n")
	for name in "${picked[@]}"; do
		validate_case "$invalid/$name" "$tmp/$name.validate.json" || { bad=$((bad + 1)); continue; }
		if "$NODE" -e '
const [want, got] = process.argv.slice(1).map((f) => new Set((require(f).issues || []).map((i) => i.path)));
const missing = [...want].filter((k) => !got.has(k)), extra = [...got].filter((k) => !want.has(k));
for (const k of missing) console.log("  only in expected.json: " + k);
for (const k of extra) console.log("  only in this run:      " + k);
process.exit(missing.length || extra.length ? 1 : 0);' "$invalid/$name/expected.json" "$tmp/$name.validate.json"; then
			echo "ok    invalid/$name"
		else
			echo "DRIFT invalid/$name"
			bad=$((bad + 1))
		fi
	done
	((bad == 0)) || die "$bad invalid case(s) differ from the recorded real validate; OpenClaw has drifted (re-record and review)"
}

# bench_env must match the env BenchmarkAudit gives the Go audit.
bench_env=(TELEGRAM_BOT_TOKEN=123456:bench-telegram-token HOOKS_TOKEN=hk_bench_0123456789abcdef0123456789)

cmd_bench() {
	local runs=${1:-3} tmp i start end total=0 ms
	tmp=$(mktemp -d)
	# Expanded now: the local is gone by the time the EXIT trap runs.
	trap "rm -rf $(printf %q "$tmp")" EXIT
	tmp=$(cd "$tmp" && pwd -P)
	mkdir -p -m 700 "$tmp/state"
	install -m 600 "$repo"/caddymodule/internal/audit/testdata/bench/* "$tmp/state/"
	for ((i = 0; i < runs; i++)); do
		start=$(date +%s%N)
		env -i PATH="$PATH" CLAWGATE_OPENCLAW_VERSION="${CLAWGATE_OPENCLAW_VERSION:-}" "${audit_env[@]}" "${bench_env[@]}" "$openclaw" audit "$tmp/state/openclaw.json" "$tmp/state" >"$tmp/out.json" 2>&1 ||
			die "real audit failed: $(head -c 1000 "$tmp/out.json")"
		end=$(date +%s%N)
		total=$((total + (end - start) / 1000))
	done
	ms=$(awk -v t="$total" -v n="$runs" 'BEGIN { printf "%.1f", t / n / 1000 }')
	echo "real openclaw security audit --json: ${ms} ms mean wall time over $runs run(s)"
	local line ns
	line=$(cd "$repo" && go test ./caddymodule/internal/audit -run '^$' -bench '^BenchmarkAudit$' -benchmem -count 1 | grep '^BenchmarkAudit')
	echo "go: $line"
	ns=$(awk '{ for (i = 1; i <= NF; i++) if ($(i+1) == "ns/op") print $i }' <<<"$line")
	awk -v ms="$ms" -v ns="$ns" 'BEGIN { printf "clawgate audit: %.3f ms per load+run; the real CLI takes %.0fx as long\n", ns / 1e6, ms * 1e6 / ns }'
}

case ${1:-} in
record | check | bench | record-validate)
	sub=$1
	shift
	NODE=$(node_bin)
	"cmd_$sub" "$@"
	;;
list) list_cases ;;
*)
	sed -n '2,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac

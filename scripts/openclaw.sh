#!/usr/bin/env bash
# openclaw.sh installs and runs the real OpenClaw gateway that clawgate's tests and demo talk to.
#
#   scripts/openclaw.sh install [VERSION...]    install Node and OpenClaw VERSION (default: the pinned
#                                               one), each release line in its own directory (idempotent)
#   scripts/openclaw.sh env [VERSION]           print shell lines that put them on PATH
#   scripts/openclaw.sh bin [VERSION]           print the path of the openclaw wrapper
#   scripts/openclaw.sh lines                   print the supported release lines, the pinned one first
#   scripts/openclaw.sh run <dir> [--port N] [gateway args...]
#                                               start a gateway isolated in <dir>; <dir>/openclaw.json
#                                               must exist; returns once /healthz and /readyz
#                                               answer 200
#   scripts/openclaw.sh stop <dir>              stop that gateway (idempotent)
#   scripts/openclaw.sh audit <config> <state-dir> [audit args...]
#                                               print `openclaw security audit --json` for that config
#
# run and audit use the release line named by $CLAWGATE_OPENCLAW_VERSION, the pinned one when unset.
# Everything lives in ${CLAWGATE_OPENCLAW_HOME:-<repo>/.cache/openclaw}: the pinned line in app/ and
# bin/, every other line in lines/<VERSION>/, all sharing one Node. The system Node (20) is too old
# for OpenClaw, so Node 24 comes from the npm registry's `node` package and is installed first:
# openclaw's preinstall checks the `node` found on PATH and refuses anything older than 24.16.
set -euo pipefail

NODE_VERSION=24.21.0
# The pinned release line, and the others clawgate supports (newest first). Keep in step with
# the known lines in caddymodule/internal/setup (openclaw version handling).
PINNED_VERSION=2026.9.6
SUPPORTED_VERSIONS=(2026.9.6 2026.8.2 2026.7.35)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
home=${CLAWGATE_OPENCLAW_HOME:-$repo/.cache/openclaw}
[[ $home == /* ]] || home=$PWD/$home # the generated wrapper must work from any directory
node_dir=$home/nodepkg/node_modules/node/bin
node_bin=$node_dir/node

die() {
	echo "openclaw.sh: $*" >&2
	exit 1
}

# select_version sets OPENCLAW_VERSION and the paths of that release line: the pinned line keeps
# the top-level app/ and bin/, every other line has its own lines/<VERSION>/ so several can be
# installed side by side.
select_version() {
	OPENCLAW_VERSION=${1:-$PINNED_VERSION}
	[[ $OPENCLAW_VERSION =~ ^[0-9]{4}\.[0-9]{1,2}\.[0-9]{1,3}$ ]] ||
		die "\"$OPENCLAW_VERSION\" is not an OpenClaw version (want YYYY.M.N, e.g. $PINNED_VERSION)"
	local base=$home
	[[ $OPENCLAW_VERSION == "$PINNED_VERSION" ]] || base=$home/lines/$OPENCLAW_VERSION
	line_home=$base
	app_main=$base/app/node_modules/openclaw/openclaw.mjs
	wrapper=$base/bin/openclaw
	stamp=$base/installed
	want_stamp="node@$NODE_VERSION openclaw@$OPENCLAW_VERSION"
	install_hint="scripts/openclaw.sh install"
	[[ $OPENCLAW_VERSION == "$PINNED_VERSION" ]] || install_hint+=" $OPENCLAW_VERSION"
}
select_version "${CLAWGATE_OPENCLAW_VERSION:-}"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# installed reports whether both pinned packages are in place. It trusts the stamp only while the
# package.json files still name the pinned versions, so a half-finished or hand-edited tree is redone.
installed() {
	[[ -x $node_bin && -f $app_main && -x $wrapper && -f $stamp ]] || return 1
	[[ $(<"$stamp") == "$want_stamp" ]] || return 1
	# A wrapper of an older form named absolute paths, which break when the tree is reached through
	# another path (a moved checkout, a symlinked cache).
	grep -qF 'BASH_SOURCE' "$wrapper" || return 1
	local got
	got=$("$node_bin" -p 'require(process.argv[1]).version + " " + require(process.argv[2]).version' \
		"$home/nodepkg/node_modules/node/package.json" "$line_home/app/node_modules/openclaw/package.json" 2>/dev/null) || return 1
	[[ $got == "$NODE_VERSION $OPENCLAW_VERSION" ]]
}

need_installed() {
	installed || die "OpenClaw $OPENCLAW_VERSION is not installed in $line_home; run: $install_hint"
}

# npm_in installs one exact package spec into its own small npm project.
npm_in() {
	local dir=$1 spec=$2
	mkdir -p "$dir"
	[[ -f $dir/package.json ]] || echo '{"name":"clawgate-openclaw","private":true}' >"$dir/package.json"
	(cd "$dir" && npm install --no-audit --no-fund --no-update-notifier --save-exact "$spec")
}

# version_of prints the version in a package.json, or nothing; it needs no jq and no node.
version_of() {
	[[ -f $1 ]] && sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | head -n 1
}

cmd_install() {
	local v
	[[ $# -gt 0 ]] || set -- "$OPENCLAW_VERSION"
	for v in "$@"; do
		select_version "$v"
		install_one
	done
}

# install_one installs the selected release line (and the shared Node) unless it is in place.
install_one() {
	local start
	start=$(now)
	if installed; then
		echo "OpenClaw $OPENCLAW_VERSION on Node $NODE_VERSION already installed in $line_home ($(since "$start"))"
		return
	fi
	mkdir -p "$home"
	# Two concurrent installs (parallel test packages, two shells) would corrupt node_modules.
	exec 9>"$home/.lock"
	flock 9
	if installed; then
		echo "OpenClaw $OPENCLAW_VERSION on Node $NODE_VERSION installed by another process ($(since "$start"))"
		return
	fi
	rm -f "$stamp"
	export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

	if [[ $(version_of "$home/nodepkg/node_modules/node/package.json") != "$NODE_VERSION" || ! -x $node_bin ]]; then
		npm_in "$home/nodepkg" "node@$NODE_VERSION"
	fi
	[[ $("$node_bin" --version) == "v$NODE_VERSION" ]] || die "$node_bin is not Node $NODE_VERSION"

	if [[ $(version_of "$line_home/app/node_modules/openclaw/package.json") != "$OPENCLAW_VERSION" || ! -f $app_main ]]; then
		# The pinned node first on PATH: openclaw's preinstall and postinstall run under it.
		PATH=$node_dir:$PATH npm_in "$line_home/app" "openclaw@$OPENCLAW_VERSION"
	fi

	# The wrapper puts the pinned node first on PATH too, so whatever node or npm openclaw spawns
	# (plugin installs, workers) is the same Node 24 and never the system one.
	mkdir -p "$line_home/bin"
	{
		echo '#!/usr/bin/env bash'
		echo "# Generated by scripts/openclaw.sh install: OpenClaw $OPENCLAW_VERSION on Node $NODE_VERSION."
		# Paths relative to the wrapper itself, so the tree can be reached through any path.
		echo 'line=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)'
		if [[ $line_home == "$home" ]]; then
			echo 'home=$line'
		else
			echo 'home=$(cd "$line/../.." && pwd)'
		fi
		echo 'PATH=$home/nodepkg/node_modules/node/bin:$PATH exec "$home/nodepkg/node_modules/node/bin/node" "$line/app/node_modules/openclaw/openclaw.mjs" "$@"'
	} >"$wrapper.tmp"
	chmod 755 "$wrapper.tmp"
	mv "$wrapper.tmp" "$wrapper"

	local version
	version=$("$wrapper" --version) || die "$wrapper --version failed"
	[[ $version == "OpenClaw $OPENCLAW_VERSION"* ]] || die "$wrapper --version printed \"$version\", want OpenClaw $OPENCLAW_VERSION"
	echo "$want_stamp" >"$stamp"
	echo "installed $version on Node $NODE_VERSION in $line_home ($(since "$start"))"
}

cmd_env() {
	[[ $# -le 1 ]] || die "usage: env [VERSION]"
	[[ $# -eq 0 ]] || select_version "$1"
	need_installed
	printf 'export CLAWGATE_OPENCLAW_HOME=%q\n' "$home"
	printf 'export CLAWGATE_OPENCLAW_VERSION=%q\n' "$OPENCLAW_VERSION"
	printf 'export PATH=%q:%q:"$PATH"\n' "$line_home/bin" "$node_dir"
}

cmd_bin() {
	[[ $# -le 1 ]] || die "usage: bin [VERSION]"
	[[ $# -eq 0 ]] || select_version "$1"
	need_installed
	echo "$wrapper"
}

cmd_lines() {
	printf '%s\n' "${SUPPORTED_VERSIONS[@]}"
}

# isolate points HOME, the config and the state dir at the given paths, so a test never reads or
# writes ~/.openclaw, and turns off LAN discovery, respawning, self-update and telemetry.
isolate() {
	export HOME=$1 OPENCLAW_CONFIG_PATH=$2 OPENCLAW_STATE_DIR=$3
	export OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_RESPAWN=1 OPENCLAW_NO_AUTO_UPDATE=1 DO_NOT_TRACK=1
	# Plain text, so log tails printed by failing tests are readable.
	export NO_COLOR=1
	mkdir -p -m 700 "$HOME"
}

# probe reports whether the gateway on port $1 answers GET $2 with 200. Bash's /dev/tcp keeps
# curl out of the requirements.
probe() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1"
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$2" "$1" >&3
		IFS= read -r -t 5 status <&3
		[[ $status == "HTTP/1."?" 200"* ]]
	) 2>/dev/null
}

# alive reports whether the gateway recorded in <dir>/pid is running. The environment check keeps
# a recycled PID from being mistaken for (and killed as) our gateway.
alive() {
	local dir=$1 pid
	[[ -f $dir/pid ]] || return 1
	pid=$(<"$dir/pid")
	kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r /proc/$pid/environ ]]; then
		{ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "OPENCLAW_STATE_DIR=$dir/state"
	fi
}

cmd_run() {
	[[ $# -ge 1 ]] || die "usage: run <dir> [--port N] [gateway args...]"
	need_installed
	local dir port="" args=()
	dir=$(cd "$1" && pwd -P) || die "run: no directory $1"
	shift
	while [[ $# -gt 0 ]]; do
		case $1 in
		--port) port=${2:?--port needs a value}; shift 2 ;;
		--port=*) port=${1#--port=}; shift ;;
		--bind | --bind=*) die "run: the gateway always binds loopback; drop $1" ;;
		--token | --token=* | --password | --password=*)
			die "run: secrets on the command line show up in ps; put them in $dir/openclaw.json" ;;
		*) args+=("$1"); shift ;;
		esac
	done
	local config=$dir/openclaw.json
	[[ -f $config && ! -L $config ]] || die "run: $config must exist and be a regular file"
	if [[ -z $port ]]; then
		port=$("$node_bin" -p "try { JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8')).gateway.port ?? 18789 } catch { 18789 }" "$config")
	fi
	[[ $port =~ ^[0-9]+$ ]] || die "run: bad port $port"
	alive "$dir" && die "run: a gateway is already running from $dir (pid $(<"$dir/pid"))"
	probe "$port" /healthz && die "run: something already answers on 127.0.0.1:$port"

	rm -f "$dir/pid" "$dir/rc"
	# Private like the config next to it: the log names paths and request details.
	(umask 077 && : >"$dir/gw.log")
	local start watch=${CLAWGATE_OPENCLAW_WATCH_PID:-}
	start=$(now)
	# A supervisor subshell stays the gateway's parent: it reaps it (PID 1 here may not) and
	# records the exit status in <dir>/rc. If CLAWGATE_OPENCLAW_WATCH_PID names a process (the Go
	# test binary), a watchdog stops the gateway when that process dies without cleaning up, so a
	# killed test run does not leave 1 GB gateways behind.
	(
		isolate "$dir/home" "$config" "$dir/state"
		# Container detection makes an unset bind mean 0.0.0.0, so loopback is always explicit.
		"$wrapper" gateway run --bind loopback --port "$port" "${args[@]}" >>"$dir/gw.log" 2>&1 </dev/null &
		gw=$!
		echo "$gw" >"$dir/pid.tmp"
		mv "$dir/pid.tmp" "$dir/pid"
		dog=""
		if [[ -n $watch ]]; then
			(while kill -0 "$watch" 2>/dev/null; do sleep 1; done; kill -TERM "$gw") </dev/null >/dev/null 2>&1 &
			dog=$!
		fi
		rc=0
		wait "$gw" || rc=$?
		echo "$rc" >"$dir/rc"
		[[ -z $dog ]] || kill "$dog" 2>/dev/null || true
	) </dev/null >/dev/null 2>&1 &

	local timeout=${CLAWGATE_OPENCLAW_START_TIMEOUT:-120} deadline
	deadline=$((SECONDS + timeout))
	# /healthz answers as soon as HTTP listens, but until /readyz does, sidecars are still starting
	# and tool calls fail with 500 "unavailable during gateway startup"; callers want both.
	local path healthy=""
	for path in /healthz /readyz; do
		until [[ -f $dir/pid ]] && probe "$port" "$path"; do
			if [[ -f $dir/rc ]] || ((SECONDS >= deadline)); then
				if [[ -f $dir/rc ]]; then
					echo "openclaw.sh: gateway in $dir exited with status $(<"$dir/rc") before $path answered 200" >&2
				else
					echo "openclaw.sh: gateway in $dir gave no 200 on $path within ${timeout}s" >&2
				fi
				echo "--- last lines of $dir/gw.log:" >&2
				tail -n 40 "$dir/gw.log" >&2 || true
				cmd_stop "$dir" >/dev/null 2>&1 || true
				exit 1
			fi
			sleep 0.5
		done
		[[ -n $healthy ]] || healthy=$(since "$start")
	done
	echo "gateway pid $(<"$dir/pid") on http://127.0.0.1:$port: /healthz 200 after $healthy, /readyz 200 after $(since "$start")"
}

cmd_stop() {
	[[ $# -eq 1 ]] || die "usage: stop <dir>"
	local dir pid i
	dir=$(cd "$1" 2>/dev/null && pwd -P) || return 0
	if ! alive "$dir"; then
		rm -f "$dir/pid"
		return 0
	fi
	pid=$(<"$dir/pid")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		alive "$dir" || break
		sleep 0.1
	done
	if alive "$dir"; then
		echo "openclaw.sh: gateway $pid ignored SIGTERM for 15s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	# The supervisor writes rc right after reaping; give it a moment so the status is reported.
	for ((i = 0; i < 20; i++)); do
		[[ -f $dir/rc ]] && break
		sleep 0.1
	done
	rm -f "$dir/pid"
	echo "gateway $pid stopped (exit status $(cat "$dir/rc" 2>/dev/null || echo unknown))"
}

cmd_audit() {
	[[ $# -ge 2 ]] || die "usage: audit <config> <state-dir> [audit args...]"
	need_installed
	local config state auditHome
	[[ -f $1 ]] || die "audit: no config file $1"
	config=$(cd "$(dirname "$1")" && pwd -P)/$(basename "$1")
	# The audit judges the state dir's mode, so a missing one is made the way OpenClaw makes it.
	[[ -d $2 ]] || mkdir -p -m 700 "$2"
	state=$(cd "$2" && pwd -P)
	shift 2
	# HOME only collects npm logs and caches here; a throwaway one keeps audits from sharing them.
	if [[ -n ${CLAWGATE_OPENCLAW_AUDIT_HOME:-} ]]; then
		auditHome=$CLAWGATE_OPENCLAW_AUDIT_HOME
	else
		auditHome=$(mktemp -d)
		# Expanded now: the local is gone by the time the EXIT trap runs.
		trap "rm -rf $(printf %q "$auditHome")" EXIT
	fi
	local rc=0
	(
		isolate "$auditHome" "$config" "$state"
		exec "$wrapper" security audit --json "$@"
	) || rc=$?
	return "$rc"
}

case ${1:-} in
install | env | bin | lines | run | stop | audit)
	sub=$1
	shift
	"cmd_$sub" "$@"
	;;
*)
	sed -n '2,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac

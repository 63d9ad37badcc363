#!/usr/bin/env bash
# openclaw-schema.sh records the JSON Schema of openclaw.json that the real OpenClaw publishes
# (`openclaw config schema`), which clawgate validates gateway configs against.
#
#   scripts/openclaw-schema.sh record [VERSION]  write caddymodule/internal/audit/schema/
#                                                openclaw-VERSION.schema.json.gz from the real CLI
#   scripts/openclaw-schema.sh check [VERSION]   fail when the installed CLI's schema differs from
#                                                the recorded one (the drift check)
#   scripts/openclaw-schema.sh versions          list the recorded versions
#
# VERSION defaults to the version of the installed OpenClaw. The CLI is $OPENCLAW_SCHEMA_BIN when set
# (an OpenClaw installed elsewhere), else the one `scripts/openclaw.sh bin VERSION` names (each
# supported release line, installed side by side by `scripts/openclaw.sh install VERSION`), else the
# pinned line's; the script refuses when that CLI's --version is not VERSION, so a file's name always
# says which OpenClaw printed it. The file is gzip -9n (no name, no timestamp): recording the same
# schema twice gives the same bytes. clawgate validates each gateway's config against the recorded
# schema of the release line it assumes for that gateway, so every supported line needs one.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$repo/caddymodule/internal/audit/schema

die() {
	echo "openclaw-schema.sh: $*" >&2
	exit 1
}

# cli <VERSION or empty>: print the CLI to run.
cli() {
	if [[ -n ${OPENCLAW_SCHEMA_BIN:-} ]]; then
		echo "$OPENCLAW_SCHEMA_BIN"
	elif [[ -n $1 ]]; then
		"$repo/scripts/openclaw.sh" bin "$1" || die "OpenClaw $1 is not installed; run: scripts/openclaw.sh install $1"
	else
		"$repo/scripts/openclaw.sh" bin || die "OpenClaw is not installed; run: scripts/openclaw.sh install"
	fi
}

# cli_version prints the bare version (2026.9.6) of the CLI.
cli_version() {
	local out
	out=$("$1" --version) || die "$1 --version failed"
	out=${out#OpenClaw }
	echo "${out%% *}"
}

# print_schema <cli> <out>: run `config schema` isolated from the user's own OpenClaw.
print_schema() {
	local tmp rc=0
	tmp=$(mktemp -d)
	env -i PATH="$PATH" HOME="$tmp/home" OPENCLAW_CONFIG_PATH="$tmp/openclaw.json" OPENCLAW_STATE_DIR="$tmp/state" \
		NO_COLOR=1 OPENCLAW_NO_AUTO_UPDATE=1 DO_NOT_TRACK=1 "$1" config schema >"$2" 2>"$tmp/err" || rc=$?
	if ((rc != 0)) || [[ $(head -c 1 "$2") != "{" ]]; then
		echo "openclaw-schema.sh: $1 config schema failed (exit $rc):" >&2
		head -c 2000 "$tmp/err" >&2 || true
		rm -rf "$tmp"
		exit 1
	fi
	rm -rf "$tmp"
}

# resolve <VERSION or empty>: print "<cli> <version>", refusing a CLI of another version.
resolve() {
	local bin version
	bin=$(cli "$1")
	version=$(cli_version "$bin")
	[[ -z $1 || $1 == "$version" ]] ||
		die "the CLI at $bin is OpenClaw $version, not $1; point OPENCLAW_SCHEMA_BIN at an OpenClaw $1"
	[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "unexpected version \"$version\" from $bin"
	echo "$bin $version"
}

cmd_record() {
	local bin version tmp
	read -r bin version < <(resolve "${1:-}")
	tmp=$(mktemp)
	print_schema "$bin" "$tmp"
	mkdir -p "$dir"
	gzip -9n -c "$tmp" >"$dir/openclaw-$version.schema.json.gz.tmp"
	mv "$dir/openclaw-$version.schema.json.gz.tmp" "$dir/openclaw-$version.schema.json.gz"
	echo "recorded OpenClaw $version's schema: $(wc -c <"$tmp") bytes, $(wc -c <"$dir/openclaw-$version.schema.json.gz") gzipped, in ${dir#"$repo"/}/openclaw-$version.schema.json.gz"
	rm -f "$tmp"
}

cmd_check() {
	local bin version tmp file
	read -r bin version < <(resolve "${1:-}")
	file=$dir/openclaw-$version.schema.json.gz
	[[ -f $file ]] || die "no recorded schema for OpenClaw $version; run: scripts/openclaw-schema.sh record $version"
	tmp=$(mktemp -d)
	# Expanded now: the local is gone by the time the EXIT trap runs.
	trap "rm -rf $(printf %q "$tmp")" EXIT
	print_schema "$bin" "$tmp/installed.json"
	gzip -dc "$file" >"$tmp/recorded.json"
	if ! cmp -s "$tmp/recorded.json" "$tmp/installed.json"; then
		echo "openclaw-schema.sh: the installed OpenClaw $version prints a schema that differs from ${file#"$repo"/}:" >&2
		diff <(tr ',' '\n' <"$tmp/recorded.json") <(tr ',' '\n' <"$tmp/installed.json") | head -n 40 >&2 || true
		die "OpenClaw's schema has drifted; re-record (scripts/openclaw-schema.sh record $version) and review"
	fi
	echo "ok    schema of OpenClaw $version matches ${file#"$repo"/}"
}

cmd_versions() {
	local f
	for f in "$dir"/openclaw-*.schema.json.gz; do
		[[ -f $f ]] || continue
		f=${f##*/openclaw-}
		echo "${f%.schema.json.gz}"
	done
}

case ${1:-} in
record | check | versions)
	sub=$1
	shift
	"cmd_$sub" "$@"
	;;
*)
	sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac

# Shared helpers for the .ci scripts (sourced, not run).

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ourlib=${CARGO_TARGET_DIR:-$repo/target}/release/libaio.so
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
syslib=/usr/lib/$multiarch/libaio.so.1

# Scratch space inside the repo (like ctests): /tmp may be tmpfs, where
# O_DIRECT fails.  INTEG_TMP overrides.  Fails (status 1, nothing printed)
# if it cannot be emptied (a file system still mounted in it): callers
# write `work=$(integ_tmp X) || exit 1`, so they never work in "".
integ_tmp() {
	local d=${INTEG_TMP:-$repo/target/integ-tmp}/$1
	if rm -rf "$d" && mkdir -p "$d"; then
		echo "$d"
	else
		echo "cannot make an empty scratch directory $d" >&2
		return 1
	fi
}

# defines_libaio_rs LIB: whether the shared library LIB is a build of this
# library, whose extra symbols are in the version node LIBAIO_RS_1.0 (libaio
# has no such node).  Every "the system libaio" reference is checked with it:
# a `make install` into /usr/local, or a copy over the system file, would
# otherwise make "ours vs the system's" compare ours with ours.
defines_libaio_rs() {
	objdump -T "$1" | grep -q 'LIBAIO_RS_1\.0'
}

# system_side PROG: why PROG, run without preload, would not be using the
# system libaio (printed; status 1), or nothing (status 0).  It must load
# $syslib, and $syslib must not be this library (defines_libaio_rs).
system_side() {
	local exe resolved
	exe=$(command -v "$1") || { echo "$1 not found"; return 1; }
	resolved=$(ldd "$exe" | awk '$1 == "libaio.so.1" { print $3 }')
	if [ "$(readlink -f "$resolved")" != "$(readlink -f "$syslib")" ]; then
		echo "$1 loads libaio.so.1 from '$resolved', not the system's $syslib"
		return 1
	fi
	if defines_libaio_rs "$syslib"; then
		echo "$syslib is libaio-rs (it defines LIBAIO_RS_1.0), not the system libaio"
		return 1
	fi
}

need_built() {
	[ -f "$ourlib" ] || { echo "$ourlib not built: run make first" >&2; exit 2; }
}

need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || { echo "missing program: $c (see .ci/run for the packages)" >&2; exit 2; }
	done
}

# preloaded LOGPREFIX CMD...: run CMD with our library preloaded and the
# dynamic linker's symbol bindings logged to LOGPREFIX.<pid> (one file per
# process), so `assert_bound` can prove the preload took effect.
preloaded() {
	local log=$1
	shift
	LD_PRELOAD=$ourlib LD_DEBUG=bindings,files LD_DEBUG_OUTPUT=$log "$@"
}

# assert_bound LOGPREFIX WHAT SYMBOL...: every binding of an io_* symbol in
# those logs went to our library, none to another libaio, the system libaio
# was never even loaded, and each SYMBOL was bound to ours at least once.
# Prints one line; returns non-zero on failure.
assert_bound() {
	local log=$1 what=$2 sym n
	shift 2
	if ! ls "$log".* >/dev/null 2>&1; then
		echo "  FAIL: $what: no dynamic-linker log ($log.*): cannot prove the preload"
		return 1
	fi
	# libaio's names (ours are a superset); not io_uring_* and friends.
	local names foreign
	names=$(objdump -T "$ourlib" | awk '$0 !~ /\*UND\*/ && $NF ~ /^io_/ { print $NF }' | sort -u | paste -sd'|')
	foreign=$(cat "$log".* | grep -E "binding file .* to .*: normal symbol \`($names)'" | grep -vF " to $ourlib [" | head -3)
	if [ -n "$foreign" ]; then
		echo "  FAIL: $what: io_* symbols bound elsewhere than $ourlib:"
		echo "$foreign" | sed 's/^/        /'
		return 1
	fi
	if cat "$log".* | grep -E "file=.*libaio\.so[.0-9]*.*generating link map" | grep -vF "file=$ourlib " | grep -q .; then
		echo "  FAIL: $what: another libaio was loaded: $(cat "$log".* | grep -E 'file=.*libaio.*generating link map' | grep -vF "$ourlib" | head -1)"
		return 1
	fi
	for sym in "$@"; do
		n=$(cat "$log".* | grep -cF "to $ourlib [0]: normal symbol \`$sym'" || true)
		if [ "$n" -eq 0 ]; then
			echo "  FAIL: $what: $sym was never bound to $ourlib"
			return 1
		fi
	done
	echo "  ok: $what: preload proven (LD_DEBUG: $* bound to $ourlib; no other libaio loaded)"
}

# Monotonic seconds with decimals, for stage timings.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

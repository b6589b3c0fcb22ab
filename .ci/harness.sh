#!/bin/bash
# harness.sh: libaio 0.3.113's own test harness (harness/cases/*.t) against
# libaio-rs, two ways:
#   (a) "built against us": compiled with our include/libaio.h, linked to our
#       libaio.so (proven: ldd, and references to LIBAIO_RS_1.0 symbols that
#       only our header produces);
#   (b) "drop-in": compiled against the system libaio (its header, -laio from
#       the system) and run with LD_PRELOAD=our libaio.so (proven per test
#       program with LD_DEBUG=bindings).
# Runs the partcheck cases, then the extra cases: 23.t (Debian disables it as
# flaky on some architectures; run and reported honestly), 8.t and 10.t
# (need root to loop-mount ext2 images; SKIPPED with the reason otherwise).
# Prints Pass/Fail/Skip per way; exits non-zero on any failure.
#
# libaio's source: $LIBAIO_SRC, else /tmp/libaio-src/libaio-0.3.113 if
# present, else (or with LIBAIO_SRC=apt) `apt-get source libaio` (needs a
# deb-src entry, see .ci/run).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
need_built
need_cmd gcc make

per_test_timeout=${HARNESS_TIMEOUT:-300}
work=$(integ_tmp harness) || exit 1

# --- libaio's source --------------------------------------------------------
src=${LIBAIO_SRC:-}
if [ -z "$src" ] && [ -d /tmp/libaio-src/libaio-0.3.113/harness/cases ]; then
	src=/tmp/libaio-src/libaio-0.3.113
fi
if [ -z "$src" ] || [ "$src" = apt ]; then
	need_cmd apt-get dpkg-source
	echo "harness: fetching libaio source with apt-get source"
	(cd "$work" && apt-get source -q libaio >"$work/apt-source.log" 2>&1) || {
		cat "$work/apt-source.log"
		echo "harness: FAIL: apt-get source libaio failed (no deb-src entry? see .ci/run)"
		exit 1
	}
	src=$(ls -d "$work"/libaio-0.3.*/ 2>/dev/null | head -1)
fi
[ -d "$src/harness/cases" ] || { echo "harness: FAIL: no harness/cases under '$src'"; exit 1; }
src=${src%/}
version=$(sed -n '1s/^libaio (\([^)]*\)).*/\1/p' "$src/debian/changelog" 2>/dev/null)
echo "harness: libaio source $src (${version:-unknown version})"
case $version in 0.3.113*) ;; *) echo "harness: warning: expected libaio 0.3.113" ;; esac

# Partcheck list exactly as the harness Makefile computes it (Debian's patch
# moves 23.t to the extras; upstream has it in partcheck: we list it once).
all_cases=$(cd "$src/harness" && find cases/ -name '*.t' | sort -n -t/ -k2)
extra_cases="cases/8.t cases/10.t cases/23.t"
part_cases=$(for t in $all_cases; do case " $extra_cases " in *" $t "*) ;; *) echo "$t" ;; esac; done)

grand_fail=0

# run_one WAY DIR PROG: runs one case with runtests.sh (libaio's runner, so
# its exit-code meaning is libaio's: 0 pass, 3 skip, else fail).
run_one() {
	local way=$1 dir=$2 prog=$3 rc out t0 aio_before others_before
	aio_before=$(cat /proc/sys/fs/aio-nr 2>/dev/null)
	others_before=$(other_aio_users)
	t0=$(now)
	out=$(cd "$dir" && run_env_$way timeout -k 10 "$per_test_timeout" ./runtests.sh "$prog" 2>&1)
	rc=$?
	local took
	took=$(elapsed "$t0")
	echo "$out" >>"$dir/runtests.out"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		echo "    $prog: FAILED (timed out after ${per_test_timeout}s)"
		fail=$((fail + 1))
		return
	fi
	local line
	line=$(grep -E "^Pass: [0-9]+  Fail: [0-9]+  Skip: [0-9]+" <<<"$out" | tail -1)
	if [ -z "$line" ]; then
		echo "    $prog: FAILED (runner output unreadable, rc=$rc)"
		fail=$((fail + 1))
		return
	fi
	local p f s
	read -r _ p _ f _ s <<<"$line"
	pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
	# A case skips (exit 3) when a call it needs fails (io_queue_init,
	# io_pgetevents, an RWF_NOWAIT or poll submission, O_DIRECT): with our
	# library that may be our bug.  Checked against the system libaio below.
	[ "$s" -ne 0 ] && case_skips="$case_skips $prog"
	echo "    $(grep -E '^Completed ' <<<"$out" | tail -1) (${took}s)"
	if [ "$f" -ne 0 ]; then
		grep -vE '^(Test run|Starting|Completed|Pass:)' <<<"$out" | tail -15 | sed 's/^/      | /'
		# aio-nr is system-wide: other processes' contexts starve tests such
		# as 18.t and 20.t (20.t needs all of aio-max-nr).  Say so; still a failure.
		echo "      (system-wide /proc/sys/fs/aio-nr: ${aio_before:-?} before this test, $(cat /proc/sys/fs/aio-nr 2>/dev/null) after;"
		echo "       other AIO users before:$others_before; after:$(other_aio_users))"
	fi
}

# Processes other than ours holding AIO rings (mapped "/[aio]" files).
other_aio_users() {
	local p n=""
	for p in $(grep -l '/\[aio\]' /proc/[0-9]*/maps 2>/dev/null | cut -d/ -f3); do
		[ "$p" = $$ ] || n="$n $p($(cat /proc/$p/comm 2>/dev/null))"
	done
	# Other copies of libaio's harness (another checkout) compete the most.
	for p in $(pgrep -f 'cases/[0-9]+\.p' 2>/dev/null); do
		[ "$(readlink /proc/$p/cwd 2>/dev/null)" = "$dir" ] || n="$n $p(harness in $(readlink /proc/$p/cwd 2>/dev/null))"
	done
	echo "${n:- none seen}"
}

# In way (b) every case runs preloaded with its bindings logged per pid.
run_env_a() { "$@"; }
run_env_b() { LD_PRELOAD=$ourlib LD_DEBUG=bindings,files LD_DEBUG_OUTPUT=$ldlog "$@"; }

# mounted_run WAY DIR IMG MNT PROG: loop-mount IMG (ext2) on MNT, run PROG.
mounted_run() {
	local way=$1 dir=$2 img=$3 mnt=$4 prog=$5 why=""
	if [ "$(id -u)" -ne 0 ]; then
		why="needs root to loop-mount $img"
	elif ! command -v mount >/dev/null; then
		why="no mount(8)"
	else
		mkdir -p "$dir/$mnt"
		local err
		if ! err=$(cd "$dir" && mount -o loop -t ext2 "$img" "$mnt" 2>&1); then
			why="mount -o loop -t ext2 $img failed: $err"
		fi
	fi
	if [ -n "$why" ]; then
		echo "    $prog: SKIPPED ($why)"
		skip=$((skip + 1))
		env_skips="$env_skips $prog"
		return
	fi
	run_one "$way" "$dir" "$prog"
	(cd "$dir" && umount "$mnt") || { echo "    $prog: FAILED to unmount $dir/$mnt"; fail=$((fail + 1)); }
}

cleanup() {
	for m in "$work"/*/harness/testdir.ext2 "$work"/*/harness/testdir.enospc; do
		mountpoint -q "$m" 2>/dev/null && umount "$m"
	done
}
trap cleanup EXIT

# run_way WAY "description" CPPFLAGS LIBAIO
run_way() {
	local way=$1 desc=$2 cppflags=$3 libaio=$4
	local dir=$work/$way/harness
	# $work/$way/src does not exist, so the Makefile's -I../src finds nothing
	# and the header is the one this way is about.
	mkdir -p "$work/$way" && cp -r "$src/harness" "$dir"
	rm -f "$dir"/cases/*.p
	echo
	echo "== way ($way): $desc"
	local progs
	progs=$(for t in $all_cases; do echo "${t%.t}.p"; done)
	if ! (cd "$dir" && make -s CPPFLAGS="$cppflags" LIBAIO="$libaio" $progs \
		testdir/rofile testdir/rwfile testdir/wofile) >"$dir/build.log" 2>&1; then
		tail -30 "$dir/build.log"
		echo "  FAIL: way ($way): the harness did not build"
		grand_fail=$((grand_fail + 1))
		return
	fi
	echo "  built $(echo $progs | wc -w) cases"

	pass=0 fail=0 skip=0 env_skips=""
	ldlog=$dir/ld/log
	mkdir -p "$dir/ld"
	proof_fail=0
	verify_linkage_$way "$dir" || proof_fail=1

	echo "  partcheck cases:"
	for t in $part_cases; do run_one "$way" "$dir" "${t%.t}.p"; done
	echo "  extra cases:"
	run_one "$way" "$dir" cases/23.p
	(cd "$dir" && mkdir -p testdir.ext2 testdir.enospc &&
		dd if=/dev/zero bs=1M count=10 of=ext2.img status=none &&
		mke2fs -q -F -b 4096 ext2.img >/dev/null 2>&1) ||
		echo "    (could not create ext2.img with mke2fs; 8.t will be skipped)"
	mounted_run "$way" "$dir" ext2-enospc.img testdir.enospc cases/10.p
	if [ -f "$dir/ext2.img" ]; then
		mounted_run "$way" "$dir" ext2.img testdir.ext2 cases/8.p
	else
		echo "    cases/8.p: SKIPPED (no ext2.img: mke2fs missing or failed)"
		skip=$((skip + 1)); env_skips="$env_skips cases/8.p"
	fi

	if [ "$way" = b ]; then
		verify_preload_b "$dir" || proof_fail=1
	fi
	echo "  way ($way) Pass: $pass  Fail: $fail  Skip: $skip${env_skips:+  (skipped for the environment:$env_skips)}"
	grand_fail=$((grand_fail + fail + proof_fail))
	summary="$summary
  way ($way) $desc: Pass: $pass  Fail: $fail  Skip: $skip$([ $proof_fail -ne 0 ] && echo '  LINKAGE PROOF FAILED')"
}

# (a): built with our header and linked to our library.
verify_linkage_a() {
	local dir=$1 p bad=0 resolved
	for p in "$dir"/cases/*.p; do
		resolved=$(ldd "$p" | awk '$1 == "libaio.so.1" { print $3 }')
		if [ "$(readlink -f "$resolved")" != "$(readlink -f "$dir/../lib/libaio.so.1")" ]; then
			echo "  FAIL: $(basename "$p") loads libaio.so.1 from '$resolved', not ours"
			bad=1
		fi
	done
	# Our header makes io_prep_* real functions in LIBAIO_RS_1.0; libaio's
	# are static inlines.  A reference proves our header was used.
	if objdump -T "$dir/cases/3.p" | grep -q 'LIBAIO_RS_1.0'; then
		echo "  ok: built with our libaio.h (cases/3.p references LIBAIO_RS_1.0) and every case loads $dir/../lib/libaio.so.1 (ours)"
	else
		echo "  FAIL: cases/3.p has no LIBAIO_RS_1.0 reference: not built with our header?"
		bad=1
	fi
	return $bad
}

# (b): built against the system libaio, which is what ldd shows without preload.
verify_linkage_b() {
	local dir=$1 p bad=0 resolved
	for p in "$dir"/cases/*.p; do
		resolved=$(ldd "$p" | awk '$1 == "libaio.so.1" { print $3 }')
		if [ "$(readlink -f "$resolved")" != "$(readlink -f "$syslib")" ]; then
			echo "  FAIL: $(basename "$p") loads libaio.so.1 from '$resolved' without preload, want the system's $syslib"
			bad=1
		fi
		if objdump -T "$p" | grep -q 'LIBAIO_RS_1.0'; then
			echo "  FAIL: $(basename "$p") references LIBAIO_RS_1.0: built with our header?"
			bad=1
		fi
	done
	[ $bad -eq 0 ] && echo "  ok: built against the system libaio (header and $syslib)"
	return $bad
}

# (b): every case program that ran had its io_* calls bound to our library.
verify_preload_b() {
	local dir=$1 p name logs bad=0 proven=0
	assert_bound "$ldlog" "way (b) all cases" io_setup io_submit io_getevents || bad=1
	for p in "$dir"/cases/*.p; do
		name=cases/$(basename "$p")
		case " $env_skips " in *" $name "*) continue ;; esac
		logs=$(grep -lF "binding file $name [0] to $ourlib [0]: normal symbol \`io_" "$ldlog".* 2>/dev/null | head -1)
		if [ -z "$logs" ]; then
			echo "  FAIL: way (b): no io_* binding of $name to $ourlib (preload not proven)"
			bad=1
		else
			proven=$((proven + 1))
		fi
	done
	[ $bad -eq 0 ] && echo "  ok: way (b): each of the $proven case programs that ran had its io_* calls bound to $ourlib"
	return $bad
}

summary=""
case_skips=""
started=$(now)

mkdir -p "$work/a/lib"
cp "$ourlib" "$work/a/lib/libaio.so.1"
ln -sf libaio.so.1 "$work/a/lib/libaio.so"
run_way a "built with include/libaio.h, linked to our libaio.so" \
	"-I$repo/include" "-L$work/a/lib -laio -Wl,-rpath,$work/a/lib"

[ -f "$syslib" ] && [ -f /usr/include/libaio.h ] || {
	echo "harness: FAIL: way (b) needs the system libaio1 and libaio-dev"
	exit 1
}
run_way b "built against the system libaio, run with LD_PRELOAD=$ourlib" "" "-laio"

# A case that skipped with our library is accepted as skipped only if it
# skips with the system libaio too, on this machine (then the machine lacks
# what it needs): the way (b) program, run without preload.
case_skips=$(tr ' ' '\n' <<<"$case_skips" | sort -u | tr '\n' ' ')
if [ -n "${case_skips// /}" ]; then
	echo
	echo "== cases that skipped with our library, run with the system libaio:"
	for prog in $case_skips; do
		out=$(cd "$work/b/harness" && timeout -k 10 "$per_test_timeout" ./runtests.sh "$prog" 2>&1)
		line=$(grep -E "^Pass: [0-9]+  Fail: [0-9]+  Skip: [0-9]+" <<<"$out" | tail -1)
		if [ "$line" = "Pass: 0  Fail: 0  Skip: 1" ]; then
			echo "    $prog: skips with the system libaio too (accepted: the machine lacks what it needs)"
		else
			echo "    $prog: FAILED: skipped with our library, but the system libaio gives '$line'"
			grand_fail=$((grand_fail + 1))
			summary="$summary
  $prog: skipped with our library only"
		fi
	done
fi

echo
echo "harness summary ($(elapsed "$started")s):$summary"
if [ "$grand_fail" -ne 0 ]; then
	echo "harness: FAIL"
	exit 1
fi
echo "harness: PASS"

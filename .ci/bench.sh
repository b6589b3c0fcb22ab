#!/bin/bash
# Side-by-side benchmark: libaio-rs (target/release/libaio.so) against the
# system libaio, in one process (see ctests/bench/aio_bench.c).
#
#   .ci/bench.sh            default run (6 rounds; a few minutes)
#   .ci/bench.sh --quick    quick run for CI (4 rounds, small runs)
#   extra arguments are passed to aio_bench (--rounds R, --ops N, --direct-ops N)
#
# Environment: CC (default cc), SYSTEM_LIBAIO (default: found with ldconfig),
# BENCH_DIR (work directory on a file system with O_DIRECT; default
# target/bench-tmp).
set -eu
cd "$(dirname "$0")/.."
. .ci/lib.sh
ROOT=$(pwd)
CC=${CC:-cc}

if [ ! -f "${CARGO_TARGET_DIR:-target}/release/libaio.so" ]; then
	echo "bench: building target/release/libaio.so" >&2
	cargo build --release
fi
OURS="${CARGO_TARGET_DIR:-$ROOT/target}/release/libaio.so"

# Set by hand (e.g. an older build of ours, for an A/B of two builds) it is
# taken as given; found here it must be libaio (checked below).
B_GIVEN=${SYSTEM_LIBAIO:+yes}
SYSTEM_LIBAIO=${SYSTEM_LIBAIO:-$(ldconfig -p 2>/dev/null | awk '/libaio\.so\.1 .*x86-64|libaio\.so\.1 .*AArch64|libaio\.so\.1 / {print $NF; exit}')}
if [ -z "$SYSTEM_LIBAIO" ] || [ ! -f "$SYSTEM_LIBAIO" ]; then
	for f in /usr/lib/x86_64-linux-gnu/libaio.so.1 /usr/lib64/libaio.so.1 /usr/lib/libaio.so.1; do
		[ -f "$f" ] && SYSTEM_LIBAIO=$f && break
	done
fi
if [ -z "$SYSTEM_LIBAIO" ] || [ ! -f "$SYSTEM_LIBAIO" ]; then
	echo "bench: no system libaio.so.1 found (install libaio1 / libaio1t64); skipped" >&2
	exit 0
fi
SYSTEM_LIBAIO=$(readlink -f "$SYSTEM_LIBAIO")
case "$SYSTEM_LIBAIO" in
"$ROOT"/*) echo "bench: SYSTEM_LIBAIO points into this repository" >&2; exit 1 ;;
esac
# A copy of ours installed where the system's should be (`make install`
# into /usr/local puts it first in the loader's cache) is not libaio.
if defines_libaio_rs "$SYSTEM_LIBAIO"; then
	if [ -z "$B_GIVEN" ]; then
		echo "bench: $SYSTEM_LIBAIO is libaio-rs (defines LIBAIO_RS_1.0), not the system libaio; set SYSTEM_LIBAIO" >&2
		exit 1
	fi
	echo "bench: note: B ($SYSTEM_LIBAIO) is a build of libaio-rs, as asked" >&2
fi
if [ ! -f /usr/include/libaio.h ]; then
	echo "bench: /usr/include/libaio.h missing (install libaio-dev); skipped" >&2
	exit 0
fi

BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench-tmp}
mkdir -p "$BENCH_DIR"
# Built against the system header (its io_prep_* are static inlines) and
# linked with -ldl only: the program must not export io_* symbols.
"$CC" -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE \
	-o "$BENCH_DIR/aio_bench" ctests/bench/aio_bench.c -ldl
if nm -D --defined-only "$BENCH_DIR/aio_bench" | grep -q ' io_'; then
	echo "bench: aio_bench exports io_* symbols" >&2
	exit 1
fi

cd "$BENCH_DIR"
exec ./aio_bench --lib-a "$OURS" --lib-b "$SYSTEM_LIBAIO" "$@"

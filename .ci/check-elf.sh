#!/bin/bash
# check-elf.sh [LIB.so [LIB.a [SYSTEM-libaio.so.1]]]
#
# Reads the built ELF files and proves that they can replace libaio 0.3.113:
#   1. SONAME is libaio.so.1;
#   2. every (symbol, version, default-or-not) the system libaio exports is
#      exported identically (objdump -T: `LIBAIO_0.4 io_cancel` is the
#      default io_cancel@@LIBAIO_0.4, `(LIBAIO_0.1) io_cancel` the old
#      non-default io_cancel@LIBAIO_0.1), and libaio's own nodes hold nothing
#      more (a program linked to us must also load with the real libaio);
#   3. the version nodes LIBAIO_0.1 <- 0.4 <- 0.5 <- LIBAIO_RS_1.0 are
#      defined with those parents (as in libaio, whose parents we compare);
#   4. every exported symbol is an io_* function in one of those nodes,
#      declared in include/libaio.h: no Rust-internal, unversioned or
#      __libaio_rs_* symbol leaks;
#   5. libaio.a exists, is an archive, and defines the same functions.
# Exits non-zero, naming each mismatch, if anything differs.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")/.." && pwd)
lib=${1:-${CARGO_TARGET_DIR:-$here/target}/release/libaio.so}
archive=${2:-${CARGO_TARGET_DIR:-$here/target}/release/libaio.a}
header=$here/include/libaio.h
if [ $# -ge 3 ]; then
	syslib=$3
else
	multiarch=$(gcc -print-multiarch 2>/dev/null || true)
	syslib=/usr/lib/${multiarch:-x86_64-linux-gnu}/libaio.so.1
fi

failures=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; failures=$((failures + 1)); }

for f in "$lib" "$syslib"; do
	[ -f "$f" ] || { echo "check-elf: $f not found (build first / install libaio1)" >&2; exit 2; }
done
echo "check-elf: ours=$lib system=$syslib"

# Defined dynamic symbols as `name@@VERSION` (default) or `name@VERSION`
# (hidden, objdump shows it in parentheses), one per line, sorted.  The
# ABS version-definition symbols GNU ld emits (`LIBAIO_0.4 LIBAIO_0.4`) are
# not functions and are left out.
dynsyms() {
	objdump -T "$1" | awk '
		$0 ~ /\*UND\*/ || $0 ~ /\*ABS\*/ { next }
		NF >= 7 && $3 ~ /^D/ {
			name = $NF; ver = $(NF - 1)
			if (ver ~ /^\(.*\)$/) { gsub(/[()]/, "", ver); print name "@" ver }
			else print name "@@" ver
		}' | sort -u
}

# Version definitions as `NODE PARENT` (PARENT `-` if none), BASE left out.
verdefs() {
	readelf -WV "$1" | awk '
		/^Version definition section/ { inside = 1; next }
		/^Version (needs|symbols) section/ { inside = 0 }
		!inside { next }
		/Flags: BASE/ { skip = 1; next }
		/Name:/ { if (node != "") print node, parent; node = $NF; parent = "-"; skip = 0; next }
		/Parent 1:/ { if (!skip) parent = $NF }
		END { if (node != "") print node, parent }'
}

echo "[1] SONAME"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" = libaio.so.1 ]; then ok "SONAME $soname"; else bad "SONAME is '${soname:-none}', want libaio.so.1"; fi

echo "[2] libaio's (symbol, version) set"
ours=$(dynsyms "$lib")
theirs=$(dynsyms "$syslib")
[ -n "$theirs" ] || bad "could not read the system libaio's symbols"
# The reference must be libaio, not a copy of ours.
defines_libaio_rs "$syslib" && bad "$syslib is libaio-rs (defines LIBAIO_RS_1.0), not the system libaio"
while read -r s; do
	[ -z "$s" ] && continue
	if grep -qxF "$s" <<<"$ours"; then ok "$s"; else bad "missing $s (system libaio exports it)"; fi
done <<<"$theirs"
# Nothing extra in libaio's own nodes (extras belong in LIBAIO_RS_1.0).
while read -r s; do
	case "$s" in *@LIBAIO_0.* | *@@LIBAIO_0.*)
		grep -qxF "$s" <<<"$theirs" || bad "$s is in a libaio node but libaio does not export it" ;;
	esac
done <<<"$ours"

echo "[3] version nodes and parents"
want_nodes="LIBAIO_0.1 -
LIBAIO_0.4 LIBAIO_0.1
LIBAIO_0.5 LIBAIO_0.4
LIBAIO_RS_1.0 LIBAIO_0.5"
got_nodes=$(verdefs "$lib")
sys_nodes=$(verdefs "$syslib")
# libaio's own nodes must match the system library's exactly.
while read -r node parent; do
	grep -qxF "$node $parent" <<<"$want_nodes" ||
		bad "system libaio defines $node (parent $parent), this script expects otherwise: update it"
done <<<"$sys_nodes"
while read -r node parent; do
	line=$(awk -v n="$node" '$1 == n' <<<"$got_nodes")
	if [ -z "$line" ]; then
		bad "version node $node not defined"
	elif [ "$line" = "$node $parent" ]; then
		ok "$node (parent ${parent/#-/none})"
	else
		bad "version node $node has parent '$(cut -d' ' -f2 <<<"$line" | sed 's/^-$/none/')', want '${parent/#-/none}'$([ "$parent" != - ] && echo ' (the linker dropped the parent: LLD never records version-node parents)')"
	fi
done <<<"$want_nodes"
while read -r node _; do
	grep -q "^$node " <<<"$want_nodes" || bad "unexpected version node $node"
done <<<"$got_nodes"

echo "[4] nothing else is exported"
nodes_re='^(LIBAIO_0\.1|LIBAIO_0\.4|LIBAIO_0\.5|LIBAIO_RS_1\.0)$'
# A prototype line (not inside a /* comment */ line) naming the function.
declared() { grep -qE "^[[:space:]]*(extern[[:space:]]+)?[A-Za-z_].*[ *]$1\(" "$2" 2>/dev/null; }
failures_before=$failures
nexports=0
sysheader=/usr/include/libaio.h
while read -r s; do
	[ -z "$s" ] && continue
	nexports=$((nexports + 1))
	name=${s%%@*}
	ver=${s##*@}
	[[ $name =~ ^io_[a-z0-9_]+$ ]] || bad "exported symbol $s is not an io_* name"
	[[ $ver =~ $nodes_re ]] || bad "exported symbol $s is not in a libaio/LIBAIO_RS node"
	if ! declared "$name" "$header"; then
		# libaio exports io_queue_wait without declaring it: same for us.
		if grep -q "^$name@" <<<"$theirs" && ! declared "$name" "$sysheader"; then
			:
		else
			bad "exported $name is not declared in include/libaio.h"
		fi
	fi
done <<<"$ours"
# Symbols of every kind, including unversioned (Base) and data ones.
nonfunc=$(objdump -T "$lib" | awk '$0 !~ /\*UND\*/ && $0 !~ /\*ABS\*/ && NF >= 7 && $3 ~ /^D/ && $3 != "DF" { print $NF }' | tr '\n' ' ')
[ -z "$nonfunc" ] || bad "exported non-function symbols: $nonfunc"
internal=$(objdump -T "$lib" | grep -v '\*UND\*' | awk 'NF >= 7 { print $NF }' | grep -E '^(__libaio_rs_|_ZN|_R[A-Z]|rust_|__rust)' | tr '\n' ' ')
[ -z "$internal" ] || bad "internal symbols exported: $internal"
if objdump -T "$lib" | grep -v '\*UND\*' | awk 'NF >= 7 && $(NF-1) == "Base"' | grep -q .; then
	bad "unversioned (Base) symbols exported"
fi
if [ "$nexports" -eq 0 ]; then
	bad "no exports found"
elif [ "$failures" -eq "$failures_before" ]; then
	ok "$nexports exports, all io_* functions in libaio/LIBAIO_RS nodes and declared like libaio does"
fi

echo "[5] static library"
if [ ! -f "$archive" ]; then
	bad "$archive missing"
elif ! ar t "$archive" >/dev/null 2>&1; then
	bad "$archive is not an ar archive"
else
	# readelf, not nm: nm trips over the LLVM bitcode plugin on Rust objects.
	# A default-versioned definition is named `io_x@@NODE` in an object (as in
	# libaio's own libaio.a); a static link resolves `io_x` to it.
	adefs=$(readelf -sW "$archive" 2>/dev/null | awk '$5 == "GLOBAL" && $7 != "UND" && $4 == "FUNC" { print $8 }' |
		sed 's/@@.*//' | sort -u)
	missing=""
	for name in $(sed 's/@.*//' <<<"$ours" | sort -u); do
		grep -qxF "$name" <<<"$adefs" || missing="$missing $name"
	done
	if [ -z "$missing" ]; then ok "libaio.a defines all $(sed 's/@.*//' <<<"$ours" | sort -u | wc -l) exported functions"; else bad "libaio.a lacks:$missing"; fi
fi

if [ "$failures" -eq 0 ]; then
	echo "check-elf: PASS"
	exit 0
fi
echo "check-elf: FAIL ($failures mismatches)"
exit 1

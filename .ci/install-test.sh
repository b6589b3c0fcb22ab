#!/bin/bash
# install-test.sh: `make install DESTDIR=$tmp PREFIX=/usr` and check the tree
# (real file, symlinks, archive, header, .pc), then build a tiny program with
# `pkg-config --cflags --libs libaio` against that install, dynamically and
# statically, run both (a real write + read through io_submit/io_getevents)
# and prove with ldd that the dynamic one loads the installed libaio-rs.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
need_built
need_cmd pkg-config gcc make

dest=$(integ_tmp install) || exit 1
dest=$dest/root
failures=0
ok() { echo "  ok: $*"; }
bad() { echo "  FAIL: $*"; failures=$((failures + 1)); }

if ! make -s -C "$repo" install DESTDIR="$dest" PREFIX=/usr >"$dest.log" 2>&1; then
	cat "$dest.log"
	echo "install-test: FAIL: make install failed"
	exit 1
fi
lib=$dest/usr/lib inc=$dest/usr/include

# The tree.
[ -f "$lib/libaio.so.1.0.2" ] && [ ! -L "$lib/libaio.so.1.0.2" ] && ok "libaio.so.1.0.2 is a file" || bad "no real file libaio.so.1.0.2"
[ "$(readlink "$lib/libaio.so.1")" = libaio.so.1.0.2 ] && ok "libaio.so.1 -> libaio.so.1.0.2" || bad "libaio.so.1 link: '$(readlink "$lib/libaio.so.1")'"
[ "$(readlink "$lib/libaio.so")" = libaio.so.1.0.2 ] && ok "libaio.so -> libaio.so.1.0.2" || bad "libaio.so link: '$(readlink "$lib/libaio.so")'"
cmp -s "$lib/libaio.so.1.0.2" "$ourlib" && ok "installed library == target/release/libaio.so" || bad "installed library differs from the build"
[ -f "$lib/libaio.a" ] && ar t "$lib/libaio.a" >/dev/null 2>&1 && ok "libaio.a installed" || bad "libaio.a missing or not an archive"
cmp -s "$inc/libaio.h" "$repo/include/libaio.h" && ok "include/libaio.h installed" || bad "header missing or different"
pc=$lib/pkgconfig/libaio.pc
if [ -f "$pc" ]; then
	grep -qx 'prefix=/usr' "$pc" && grep -qx 'libdir=/usr/lib' "$pc" && grep -qx 'includedir=/usr/include' "$pc" &&
		! grep -q '@' "$pc" && ok "libaio.pc has prefix/libdir/includedir substituted" || bad "libaio.pc not substituted: $(cat "$pc")"
else
	bad "no $pc"
fi

# pkg-config against the DESTDIR install (sysroot maps /usr -> $dest/usr).
export PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs libaio) || bad "pkg-config --cflags --libs libaio failed"
want="-I$dest/usr/include -L$dest/usr/lib -laio"
[ "$(echo $flags)" = "$want" ] && ok "pkg-config --cflags --libs libaio: $flags" || bad "pkg-config gave '$flags', want '$want'"
pkg-config --modversion libaio | grep -qx "$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)" ||
	bad "pkg-config --modversion: $(pkg-config --modversion libaio)"

# A tiny program: write 4 KiB at offset 4096 and read it back with libaio.
prog=$(dirname "$dest")/tiny.c
cat >"$prog" <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <libaio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char out[4096] __attribute__((aligned(4096))), in[4096] __attribute__((aligned(4096)));
	io_context_t ctx = 0;
	struct iocb cb, *cbs[1] = { &cb };
	struct io_event ev;
	int fd = open(argc > 1 ? argv[1] : "tiny.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || io_setup(8, &ctx) != 0) { perror("setup"); return 1; }
	memset(out, 0x5a, sizeof out);
	io_prep_pwrite(&cb, fd, out, sizeof out, 4096);
	if (io_submit(ctx, 1, cbs) != 1 || io_getevents(ctx, 1, 1, &ev, NULL) != 1 || ev.res != sizeof out) {
		fprintf(stderr, "write failed\n"); return 1;
	}
	io_prep_pread(&cb, fd, in, sizeof in, 4096);
	if (io_submit(ctx, 1, cbs) != 1 || io_getevents(ctx, 1, 1, &ev, NULL) != 1 || ev.res != sizeof in ||
	    ev.obj != &cb || memcmp(in, out, sizeof in) != 0) {
		fprintf(stderr, "read back failed\n"); return 1;
	}
	if (io_destroy(ctx) != 0) { fprintf(stderr, "io_destroy failed\n"); return 1; }
	printf("tiny: wrote and read back 4096 bytes through libaio\n");
	return 0;
}
EOF
bin=$(dirname "$dest")/tiny
if gcc -Wall -Werror -O2 -o "$bin" "$prog" $(pkg-config --cflags --libs libaio) -Wl,-rpath,"$lib" 2>&1; then
	ldd_out=$(ldd "$bin")
	resolved=$(awk '$1 == "libaio.so.1" { print $3 }' <<<"$ldd_out")
	if [ "$(readlink -f "$resolved")" = "$(readlink -f "$lib/libaio.so.1.0.2")" ]; then
		ok "ldd: tiny loads libaio.so.1 => $resolved (the DESTDIR install)"
	else
		bad "ldd: tiny loads libaio.so.1 from '$resolved', not the DESTDIR install"
	fi
	objdump -T "$bin" | grep -q 'LIBAIO_RS_1.0' && ok "tiny uses io_prep_* from our header (LIBAIO_RS_1.0)" || bad "tiny has no LIBAIO_RS_1.0 reference"
	(cd "$(dirname "$bin")" && "$bin" tiny.dat) && ok "tiny (dynamic) ran: data read back" || bad "tiny (dynamic) failed"
else
	bad "tiny did not compile/link with pkg-config flags"
fi

# Static: libaio.a via pkg-config --static (Libs.private lists what Rust's std needs).
private=$(pkg-config --static --libs-only-l libaio | tr ' ' '\n' | grep -vx -- -laio | tr '\n' ' ')
if gcc -Wall -Werror -O2 -o "$bin-static" "$prog" $(pkg-config --cflags libaio) "$lib/libaio.a" $private 2>&1; then
	if ldd "$bin-static" | grep -q libaio; then
		bad "tiny-static still loads a shared libaio"
	elif (cd "$(dirname "$bin")" && "$bin-static" tiny-static.dat); then
		ok "tiny-static (libaio.a, no libaio.so needed) ran: data read back"
	else
		bad "tiny-static failed"
	fi
else
	bad "tiny-static did not link against libaio.a"
fi

# And make uninstall removes everything it installed.
make -s -C "$repo" uninstall DESTDIR="$dest" PREFIX=/usr >/dev/null 2>&1
left=$(find "$dest" -type f -o -type l)
[ -z "$left" ] && ok "make uninstall removed every installed file" || bad "make uninstall left: $left"

[ "$failures" -eq 0 ] || { echo "install-test: FAIL ($failures)"; exit 1; }
echo "install-test: PASS"

# libaio-rs: build, test and install it like the C library it replaces.
#
#   make              build target/release/libaio.so (+ libaio.so.1, libaio.a, libaio.pc)
#   make run          build, then run a real workload (fio, libaio engine) through it
#   make check        build, then run every test (cargo tests, ELF/ABI checks,
#                     install test, libaio's own harness, fio, real programs)
#   make install      PREFIX=/usr/local LIBDIR=$(PREFIX)/lib INCLUDEDIR=$(PREFIX)/include DESTDIR=
#   make uninstall    same variables
#
# Installed like Debian's libaio1/libaio-dev: the real file libaio.so.1.0.2,
# symlinks libaio.so.1 (the SONAME) and libaio.so (for -laio), libaio.a,
# libaio.h, and a pkg-config file.

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR      ?=

CARGO   ?= cargo
INSTALL ?= install

# The release we are a drop-in for (Cargo.toml's version) and its file names.
VERSION  := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
SONAME   := libaio.so.1
REALNAME := libaio.so.1.0.2

# Where cargo builds (it honours CARGO_TARGET_DIR, so must we).
OUT := $(or $(CARGO_TARGET_DIR),target)/release

# pkgconfig/libaio.pc.in -> libaio.pc: $(call gen_pc,prefix,libdir,includedir)
gen_pc = sed -e 's|@PREFIX@|$(1)|g' -e 's|@LIBDIR@|$(2)|g' \
	     -e 's|@INCLUDEDIR@|$(3)|g' -e 's|@VERSION@|$(VERSION)|g' pkgconfig/libaio.pc.in

.PHONY: all build run check install uninstall clean

all: build

# cargo decides what is stale; the symlink and build-tree .pc are cheap.
build:
	$(CARGO) build --release
	ln -sf libaio.so $(OUT)/$(SONAME)
	$(call gen_pc,$(CURDIR),$(CURDIR)/$(OUT),$(CURDIR)/include) > $(OUT)/libaio.pc

run: all
	.ci/workload.sh
	@if [ -x .ci/bench.sh ]; then .ci/bench.sh; \
	 else echo "(.ci/bench.sh not present: no side-by-side benchmark in this tree)"; fi

check: all
	.ci/check.sh

# `sudo make install` often has no cargo on root's PATH: then install what
# `make` built (and refuse if nothing was built).
install: $(if $(shell command -v $(CARGO) 2>/dev/null),all,installable)
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 0755 $(OUT)/libaio.so $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(LIBDIR)/libaio.so
	$(INSTALL) -m 0644 $(OUT)/libaio.a $(DESTDIR)$(LIBDIR)/libaio.a
	$(INSTALL) -m 0644 include/libaio.h $(DESTDIR)$(INCLUDEDIR)/libaio.h
	$(call gen_pc,$(PREFIX),$(LIBDIR),$(INCLUDEDIR)) > $(DESTDIR)$(PKGCONFIGDIR)/libaio.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/libaio.pc
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then ldconfig; fi

.PHONY: installable
installable:
	@test -f $(OUT)/libaio.so -a -f $(OUT)/libaio.a || \
	 { echo "nothing built: run 'make' first (cargo not found)" >&2; exit 1; }

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libaio.so $(DESTDIR)$(LIBDIR)/libaio.a \
	      $(DESTDIR)$(INCLUDEDIR)/libaio.h $(DESTDIR)$(PKGCONFIGDIR)/libaio.pc
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then ldconfig; fi

clean:
	$(CARGO) clean

# bdsnap - top-level build, test and demo.
#
#   make demo    install what is missing, build, show a snapshot/restore cycle in a guest
#   make test    install what is missing, build, run every test (host + guest)
#
# Modules are built for KVER (the newest /lib/modules/*/build; override with
# KVER= or KDIR=) and are only ever loaded inside a QEMU guest by tests/vm/run.py,
# except by `make load`, which is for a real host.

PY      ?= /usr/bin/python3
PYTEST  := $(PY) -m pytest -p no:cacheprovider
VM      := $(PY) tests/vm/run.py
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PASSWORD_FILE ?= /etc/bdsnap/password

HOST_RELEASE := $(shell . /etc/os-release 2>/dev/null && echo $$VERSION_CODENAME)

# Debian packages per goal, named alike on Debian 12 and 13 (linux-source and
# libclang-rt-dev are the releases' own metapackages) but one: systemd.pc,
# which tells debian/rules where units go, is in systemd on Debian 12 and in
# systemd-dev from Debian 13 on. `make demo` installs
# the first two lists, `make test` the first three and PKG_PACKAGES (its host
# tests build the Debian packages and run lintian); the debug kernel's build
# installs its own (tests/vm/debug_kernel.sh), as the arm64 side does
# (tests/arm64/deps.sh).
BUILD_PACKAGES := build-essential pkg-config linux-headers-amd64 kmod zlib1g-dev libkmod-dev \
	libsmartcols-dev
DEMO_PACKAGES  := qemu-system-x86 linux-image-amd64 busybox-static e2fsprogs xz-utils cpio \
	python3 util-linux
TEST_PACKAGES  := python3-pytest fio dmsetup fdisk debootstrap btrfs-progs xfsprogs dosfstools \
	clang libclang-rt-dev
DEBUG_PACKAGES := linux-source bc bison flex libssl-dev libelf-dev dwarves
# `make deb` (debian/): dpkg-buildpackage, debhelper with dh-dkms, and
# lintian, which must find no error in the packages.
PKG_PACKAGES   := dpkg-dev debhelper dh-dkms dkms fakeroot lintian \
	$(if $(filter bookworm,$(HOST_RELEASE)),systemd,systemd-dev)

SUBDIRS := module singlefile_fs usctm lib cli

# The project's own builds treat warnings as errors; debian/rules builds with
# WERROR= (a newer compiler's new warning must not break a package build).
WERROR ?= -Werror

.PHONY: all deps $(SUBDIRS) test test-host test-guest test_ext4 test_singlefile_fs \
	demo load unload clean

ifeq ($(ARCH),arm64)
all: arm64
else
all: $(SUBDIRS)
endif

module:
	$(MAKE) -C $@

singlefile_fs:
	$(MAKE) -C $@ WERROR=$(WERROR)

# With its test client: the module and caller the usctm scenarios load.
usctm:
	$(MAKE) -C usctm all test_client

lib:
	$(MAKE) -C lib WERROR=$(WERROR)

cli: lib
	$(MAKE) -C cli WERROR=$(WERROR)

# Idempotent: apt-get runs only when a package is missing.
define install_missing
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

.PHONY: deps-build deps-demo deps-debug deps-pkg
deps-build:
	$(call install_missing,$(BUILD_PACKAGES))

deps-demo:
	$(call install_missing,$(BUILD_PACKAGES) $(DEMO_PACKAGES))

deps:
	$(call install_missing,$(BUILD_PACKAGES) $(DEMO_PACKAGES) $(TEST_PACKAGES) $(PKG_PACKAGES))

deps-debug:
	$(call install_missing,$(DEBUG_PACKAGES))

deps-pkg:
	$(call install_missing,$(BUILD_PACKAGES) $(PKG_PACKAGES))

# The roots of the other Debian kernels are made in the background while the
# host tests run; test-kernels waits for them (tests/vm/kernel_root.sh's lock).
test: deps
	$(MAKE) kernel-roots-bg
	$(MAKE) all
	$(MAKE) test-host
	$(MAKE) test-arm64
	$(MAKE) test-kernels

# Every scenario on every kernel, then on the debug kernel (~3 h).
test-all: deps
	$(MAKE) kernel-roots-bg
	$(MAKE) all
	$(MAKE) test-host
	$(MAKE) test-arm64
	$(PY) tests/kernels.py --all
	$(MAKE) test-debug

# Host side: unit tests, the guest runner's own tests, a minute of fuzzing of
# the store parser, three crash-and-restore runs of ordered mode, and one
# crash of a rollback session and one of its rollback, each finished at the
# next boot (tests/crash/test_rollback_crash.py). The debug
# kernel's checker self-tests (~10 min) run in test-debug.
test-host:
	$(PYTEST) tests/unit tests/host --ignore=tests/host/test_debug_kernel.py
	BDSNAP_FUZZ_SECONDS=60 $(PYTEST) -v -s tests/fuzz
	BDSNAP_CRASH_RUNS=3 $(PYTEST) -v -s tests/crash

# The guest scenarios on Debian 12's, 13's and sid's kernels, two guests at a
# time (tests/kernels.py; docs/kernels.md): every scenario on 6.1 and 6.12, a
# subset on 7.x. test-guest: every scenario on the host's kernel only.
test-kernels: kernel-roots
	$(PY) tests/kernels.py

test-guest:
	$(VM) --name scenarios --timeout 3600 -- $(PYTEST) -v --durations=15 tests/scenarios

# The README's two commands on a fresh, debootstrapped root of RELEASE
# (bookworm or trixie) with a clone of HEAD: `make demo` then `make test`,
# timed (tests/fresh.sh; WHAT=demo or test runs one of them).
RELEASE ?= bookworm
WHAT ?= both
.PHONY: test-fresh
test-fresh: deps
	tests/fresh.sh $(RELEASE) $(WHAT)

# ---- other Debian kernels: debootstrapped roots, cached in /var/cache/bdsnap ----
.PHONY: kernel-roots kernel-roots-bg test-kernels test-all
# The other supported releases' kernels: all but the host's own.
KERNEL_ROOTS := $(filter-out $(HOST_RELEASE),bookworm trixie sid)

kernel-roots:
	for r in $(KERNEL_ROOTS); do tests/vm/kernel_root.sh $$r >/dev/null || exit 1; done

kernel-roots-bg:
	@mkdir -p build
	@for r in $(KERNEL_ROOTS); do \
		tests/vm/kernel_root.sh $$r --path >/dev/null && continue; \
		echo "kernel-roots-bg: making the $$r root in the background (log: build/root-$$r.log)"; \
		nohup tests/vm/kernel_root.sh $$r >build/root-$$r.log 2>&1 </dev/null & \
	done

# ---- arm64: cross-built modules and tools, Debian's arm64 kernel emulated ----
# (tests/arm64/README.md). `make ARCH=arm64` builds only the arm64 side.
.PHONY: deps-arm64 arm64 test-arm64

deps-arm64:
	tests/arm64/deps.sh

arm64: deps-arm64
	tests/arm64/build.sh

# bdsnap's hooks need DYNAMIC_FTRACE_WITH_REGS, which Debian's arm64 kernels
# have up to 6.1 (Debian 12) and not from 6.12 on (WITH_ARGS only): on a
# Debian 13 host, whose arm64 kernel is 6.12, the arm64 run says so instead.
test-arm64: deps-arm64
	@kdir=$$(. "$$(tests/arm64/deps.sh --path)/env" && echo "$$KDIR"); \
	if ! grep -qx 'CONFIG_DYNAMIC_FTRACE_WITH_REGS=y' "$$kdir/include/config/auto.conf"; then \
		echo "test-arm64: NOT RUN: the arm64 kernel $${kdir##*linux-headers-} has no" \
			"DYNAMIC_FTRACE_WITH_REGS, which bdsnap's hooks need (docs/kernels.md)"; \
		exit 0; \
	fi; \
	$(MAKE) arm64 && $(PYTEST) -q tests/arm64/test_harness.py && $(PY) tests/arm64/run.py --quiet

# The seed project's habits: one scenario group at a time.
test_ext4: deps
	$(MAKE) all
	$(VM) --name ext4 -- $(PYTEST) -v -m ext4 tests/scenarios

test_singlefile_fs: deps
	$(MAKE) all
	$(VM) --name singlefile_fs -- $(PYTEST) -v -m singlefile_fs tests/scenarios

demo: deps-demo
	$(MAKE) all
	$(VM) --name demo -- sh tests/demo.sh

# For a real host (never used by the tests). The password comes from a
# root-only file, never from a command line (bdsnap load hands it to the
# kernel through libkmod, in memory).
load: all
	$(SUDO) cli/bdsnap load --from . --passfile $(PASSWORD_FILE)
	-$(SUDO) insmod singlefile_fs/singlefilefs.ko

unload:
	-$(SUDO) rmmod singlefilefs
	$(SUDO) cli/bdsnap unload

clean:
	for d in $(SUBDIRS); do $(MAKE) -C $$d clean; done
	rm -rf build

# ---- install / uninstall ----------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=/staging]: the FHS layout of the
# Debian packages (debian/rules runs it with PREFIX=/usr):
#   $(SBINDIR)/bdsnap             the CLI, linked against libbdsnap.so.0
#   $(LIBDIR)/libbdsnap.so.0 .so .a, $(LIBDIR)/pkgconfig/bdsnap.pc
#                                 LIBDIR: the multiarch directory
#   $(INCLUDEDIR)/bdsnap/         bdsnap.h and uapi/bdsnap.h (it includes it)
#   $(MANDIR)/man8/bdsnap.8, $(SYSTEMDUNITDIR)/bdsnap.service,
#   $(DOCDIR)/bdsnap.conf.example
#   $(DKMS_SRCDIR)/               dkms.conf and the module sources, for DKMS
# With DESTDIR nothing outside it is touched and dkms is not needed. Without
# it, as root: ldconfig, and `dkms add` + `dkms install` when dkms is there.
PREFIX       ?= /usr/local
SBINDIR      ?= $(PREFIX)/sbin
MULTIARCH    := $(shell $(CC) -print-multiarch 2>/dev/null)
LIBDIR       ?= $(PREFIX)/lib$(if $(MULTIARCH),/$(MULTIARCH))
INCLUDEDIR   ?= $(PREFIX)/include
MANDIR       ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR       ?= $(PREFIX)/share/doc/bdsnap
PKG_VERSION  := $(shell awk '/^\#define BDSNAP_VERSION_(MAJOR|MINOR|PATCH)[ \t]/ \
		{ v = v (v == "" ? "" : ".") $$3 } END { print v }' include/uapi/bdsnap.h)
DKMS_SRCDIR  ?= /usr/src/bdsnap-$(PKG_VERSION)
# What DKMS builds from: the three modules' sources and build files, the uapi
# header and mk/ (not usctm/test_client/, not mkfs.singlefilefs).
DKMS_DIRS    := module singlefile_fs usctm
DKMS_FILES   := include/uapi/bdsnap.h mk/kernel.mk \
	$(filter-out %.mod.c singlefile_fs/mkfs.singlefilefs.c, \
		$(foreach d,$(DKMS_DIRS),$(wildcard $(d)/*.c $(d)/*.h $(d)/Kbuild $(d)/Makefile)))
HAVE_DKMS    := $(shell command -v dkms 2>/dev/null)
INSTALLED    := $(SBINDIR)/bdsnap $(LIBDIR)/libbdsnap.so.0 $(LIBDIR)/libbdsnap.so \
	$(LIBDIR)/libbdsnap.a $(PKGCONFIGDIR)/bdsnap.pc $(INCLUDEDIR)/bdsnap/bdsnap.h \
	$(INCLUDEDIR)/bdsnap/uapi/bdsnap.h $(MANDIR)/man8/bdsnap.8 \
	$(SYSTEMDUNITDIR)/bdsnap.service $(DOCDIR)/bdsnap.conf.example

.PHONY: install install-dkms uninstall

# bdsnap.pc names directories under the prefix through ${prefix}, so that
# pkg-config --define-variable=prefix=... relocates it.
under_prefix = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

install: lib cli
	$(MAKE) -C cli shared/bdsnap WERROR=$(WERROR)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(INCLUDEDIR)/bdsnap/uapi $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 755 cli/shared/bdsnap $(DESTDIR)$(SBINDIR)/bdsnap
	install -m 644 lib/libbdsnap.so.0 $(DESTDIR)$(LIBDIR)/libbdsnap.so.0
	ln -sf libbdsnap.so.0 $(DESTDIR)$(LIBDIR)/libbdsnap.so
	install -m 644 lib/libbdsnap.a $(DESTDIR)$(LIBDIR)/libbdsnap.a
	install -m 644 lib/bdsnap.h $(DESTDIR)$(INCLUDEDIR)/bdsnap/bdsnap.h
	install -m 644 include/uapi/bdsnap.h $(DESTDIR)$(INCLUDEDIR)/bdsnap/uapi/bdsnap.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call under_prefix,$(LIBDIR))|' \
		-e 's|@INCLUDEDIR@|$(call under_prefix,$(INCLUDEDIR))|' \
		-e 's|@VERSION@|$(PKG_VERSION)|' lib/bdsnap.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/bdsnap.pc
	install -m 644 cli/bdsnap.8 $(DESTDIR)$(MANDIR)/man8/bdsnap.8
	sed 's|@SBINDIR@|$(SBINDIR)|g' systemd/bdsnap.service.in \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/bdsnap.service
	install -m 644 systemd/bdsnap.conf.example $(DESTDIR)$(DOCDIR)/bdsnap.conf.example
	$(MAKE) install-dkms
	@[ -n "$(DESTDIR)" ] || [ "$$(id -u)" != 0 ] || ldconfig

install-dkms:
	install -d $(DESTDIR)$(DKMS_SRCDIR)
	sed 's/^PACKAGE_VERSION=.*/PACKAGE_VERSION="$(PKG_VERSION)"/' dkms.conf \
		> $(DESTDIR)$(DKMS_SRCDIR)/dkms.conf
	for f in $(DKMS_FILES); do \
		install -D -m 644 $$f $(DESTDIR)$(DKMS_SRCDIR)/$$f || exit 1; \
	done
ifeq ($(DESTDIR),)
ifneq ($(HAVE_DKMS),)
	dkms status -m bdsnap -v $(PKG_VERSION) | grep -q . || dkms add -m bdsnap -v $(PKG_VERSION)
	dkms install -m bdsnap -v $(PKG_VERSION)
else
	@echo "install-dkms: dkms not found: module sources in $(DKMS_SRCDIR), not built" \
		"(install dkms, then dkms install -m bdsnap -v $(PKG_VERSION))"
endif
endif

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/bdsnap/uapi $(DESTDIR)$(INCLUDEDIR)/bdsnap \
		$(DESTDIR)$(DOCDIR) 2>/dev/null
ifeq ($(DESTDIR),)
ifneq ($(HAVE_DKMS),)
	if dkms status -m bdsnap -v $(PKG_VERSION) | grep -q .; then \
		dkms remove -m bdsnap -v $(PKG_VERSION) --all; \
	fi
endif
endif
	rm -rf $(DESTDIR)$(DKMS_SRCDIR)

# ---- Debian packages (debian/) -------------------------------------------------
# make deb: bdsnap, libbdsnap0, libbdsnap-dev and bdsnap-dkms in build/deb/,
# built with dpkg-buildpackage -us -uc -b from a copy of the work tree's files
# (git's tracked and untracked-but-not-ignored ones: nothing built here leaks
# in, and `debian/rules clean` never touches this tree), then checked by
# lintian (build/deb/lintian.txt): an error or a warning fails.
# make test-packages: install, use and purge them in a guest of each supported
# Debian release, booted with systemd on an overlay of that release's cached
# root (tests/packages/, 5-8 min a release, one guest at a time; not part of
# make test: CI's time).
DEB_OUT := build/deb
DEB_SRC := $(DEB_OUT)/src/bdsnap-$(PKG_VERSION)
.PHONY: deb test-packages

deb: deps-pkg
	rm -rf $(DEB_OUT)
	mkdir -p $(DEB_SRC)
	git ls-files -z --cached --others --exclude-standard | \
		tar --null -T - --ignore-failed-read -cf - | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning --info $(DEB_OUT)/src/bdsnap_$(PKG_VERSION)_*.changes \
		> $(DEB_OUT)/lintian.txt || { cat $(DEB_OUT)/lintian.txt; exit 1; }
	cat $(DEB_OUT)/lintian.txt
	mv $(DEB_OUT)/src/*.deb $(DEB_OUT)/src/*.changes $(DEB_OUT)/src/*.buildinfo $(DEB_OUT)/
	rm -rf $(DEB_OUT)/src

test-packages: deb
	for r in bookworm trixie sid; do tests/vm/kernel_root.sh $$r >/dev/null || exit 1; done
	$(PYTEST) -v -s tests/packages

# ---- issue 8: long fault tests and fuzzing -----------------------------------
# make stress   20 crash runs on ordered sessions (each: crash the guest during
#               writes, reboot, restore, compare on the host; ~25 s a run) plus 3
#               non-ordered runs (reported only), 5 crashes each of a rollback
#               session and of its rollback, then 8 writers for 2 minutes on
#               an ordered and a plain session (~6 min): ~20 min in all
# make fuzz     libFuzzer on libbdsnap's store parser for FUZZ_SECONDS (default
#               1800); the corpus grows in build/fuzz/corpus
.PHONY: stress fuzz

stress: deps
	$(MAKE) all
	BDSNAP_CRASH_RUNS=20 BDSNAP_CRASH_PLAIN_RUNS=3 BDSNAP_ROLLBACK_CRASH_RUNS=5 \
		$(PYTEST) -v -s tests/crash
	$(VM) --name stress --timeout 1800 -- \
		'BDSNAP_STRESS_SECONDS=120 $(PYTEST) -v -s -k concurrent tests/scenarios/test_faults.py'

FUZZ_SECONDS ?= 1800
fuzz: deps
	$(MAKE) lib
	BDSNAP_FUZZ_SECONDS=$(FUZZ_SECONDS) $(PYTEST) -v -s tests/fuzz

# ---- issue 9: benchmark -------------------------------------------------------
# make bench   one guest boot (~20 min): fio on ext4 with no snapshot, bdsnap V2,
#              V2 ordered and dm-snapshot, at the libaio jobs' queue depths and at
#              queue depth 1 (psync); a write loop on singlefilefs alone, with
#              V1 and with V2; store size, restore vs dd, kernel memory. Writes
#              bench/results/<date>.md and .png (bench/report.py; gnuplot-nox is
#              installed here, only `make bench` needs it). The smoke variant runs
#              in `make test` (tests/scenarios/test_bench_smoke.py).
.PHONY: bench

bench: deps
	@dpkg-query -W -f='$${Status}\n' gnuplot-nox 2>/dev/null | grep -q '^install ok installed' || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends gnuplot-nox; }
	$(MAKE) all
	$(VM) --name bench --mem 3072 --timeout 2400 -- \
		'$(PY) bench/bench.py --profile full --out /results'
	$(PY) bench/report.py build/vm-results/bench/bench.json --out bench/results

# ---- issue 11: debug kernel ---------------------------------------------------
# The scenarios also run on a debug kernel (KASAN, lockdep, atomic-sleep,
# kmemleak, DEBUG_LIST) built from Debian's linux-source (the host release's) with
# tests/vm/debug.config and cached outside the clone, in /var/cache/bdsnap
# (tests/vm/debug_kernel.sh). The guest runner boots it with KERNEL=debug and
# fails a run on any checker report (tests/vm/run.py).
#
#   make debug-kernel      build it (~16-32 min on 2 cores; nothing to do when cached)
#   make test-debug        every scenario on it (~100 min; `make test-all` runs it,
#                          `make test` does not: beside the three kernels it does not
#                          fit in CI's 90 minutes)
#   make test-debug-smoke  the debug_smoke subset (30 scenarios in
#                          tests/scenarios/conftest.py, ~35 min) on it, if the kernel is cached or
#                          BDSNAP_DEBUG_KERNEL=1 (then it waits for a build in
#                          progress, or builds); otherwise it says so and passes
#   make debug-kernel-bg   if BDSNAP_DEBUG_KERNEL=1 and no kernel is cached: start
#                          the build in the background (niced, log in
#                          build/debug-kernel.log) and return at once, so that the
#                          build overlaps other work; debug_kernel.sh's lock makes
#                          test-debug-smoke wait.
.PHONY: debug-kernel debug-kernel-bg test-debug test-debug-smoke

DEBUG_KERNEL_SH  := tests/vm/debug_kernel.sh
DEBUG_KERNEL_LOG := build/debug-kernel.log

debug-kernel: deps deps-debug
	$(DEBUG_KERNEL_SH)

debug-kernel-bg:
	@if [ "$(BDSNAP_DEBUG_KERNEL)" = 1 ] && ! $(DEBUG_KERNEL_SH) --path >/dev/null; then \
		mkdir -p build; \
		echo "debug-kernel-bg: building the debug kernel in the background (log: $(DEBUG_KERNEL_LOG))"; \
		nohup nice -n 19 $(DEBUG_KERNEL_SH) >$(DEBUG_KERNEL_LOG) 2>&1 </dev/null & \
	fi

test-debug: debug-kernel
	$(MAKE) all
	$(PYTEST) -v tests/host/test_debug_kernel.py
	KERNEL=debug $(VM) --name scenarios-debug --timeout 9000 -- $(PYTEST) -v tests/scenarios

test-debug-smoke:
	@if [ "$(BDSNAP_DEBUG_KERNEL)" != 1 ] && ! $(DEBUG_KERNEL_SH) --path >/dev/null; then \
		echo "test-debug-smoke: skipped: no cached debug kernel (make debug-kernel, or BDSNAP_DEBUG_KERNEL=1)"; \
		exit 0; \
	fi; \
	$(DEBUG_KERNEL_SH) --path >/dev/null || \
		echo "test-debug-smoke: waiting for the debug kernel build (background log: $(DEBUG_KERNEL_LOG))"; \
	t0=$$(date +%s); \
	$(DEBUG_KERNEL_SH) || { tail -n 30 $(DEBUG_KERNEL_LOG) 2>/dev/null; exit 1; }; \
	echo "test-debug-smoke: debug kernel ready after $$(( $$(date +%s) - t0 )) s"; \
	$(MAKE) all && \
	KERNEL=debug $(VM) --name debug-smoke --timeout 3600 -- $(PYTEST) -v -m debug_smoke tests/scenarios

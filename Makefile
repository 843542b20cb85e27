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

# Debian 12 packages the build, the tests and the demo need.
DEB_PACKAGES := build-essential pkg-config qemu-system-x86 linux-image-amd64 \
	linux-headers-amd64 busybox-static kmod e2fsprogs zlib1g-dev libkmod-dev \
	python3 python3-pytest xz-utils cpio fio dmsetup fdisk util-linux

SUBDIRS := module singlefile_fs usctm lib cli

.PHONY: all deps $(SUBDIRS) test test-host test-guest test_ext4 test_singlefile_fs \
	demo load unload clean

all: $(SUBDIRS)

module singlefile_fs usctm:
	$(MAKE) -C $@

lib:
	$(MAKE) -C lib

cli: lib
	$(MAKE) -C cli

# Idempotent: apt-get runs only when a package is missing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

test: deps
	$(MAKE) all
	$(MAKE) test-host
	$(MAKE) test-guest

test-host:
	$(PYTEST) tests/unit tests/host

test-guest:
	$(VM) --name scenarios -- $(PYTEST) -v tests/scenarios

# The seed project's habits: one scenario group at a time.
test_ext4: deps
	$(MAKE) all
	$(VM) --name ext4 -- $(PYTEST) -v -m ext4 tests/scenarios

test_singlefile_fs: deps
	$(MAKE) all
	$(VM) --name singlefile_fs -- $(PYTEST) -v -m singlefile_fs tests/scenarios

demo: deps
	$(MAKE) all
	$(VM) --name demo -- sh tests/demo.sh

# For a real host (never used by the tests). The password comes from a
# root-only file, never from the command line.
load: all
	@test -r $(PASSWORD_FILE) || { echo "load: $(PASSWORD_FILE): missing (one line, mode 0600)"; exit 1; }
	$(SUDO) insmod module/bdsnap.ko password="$$($(SUDO) cat $(PASSWORD_FILE))"
	-$(SUDO) insmod singlefile_fs/singlefilefs.ko

unload:
	-$(SUDO) rmmod singlefilefs
	$(SUDO) rmmod bdsnap

clean:
	for d in $(SUBDIRS); do $(MAKE) -C $$d clean; done
	rm -rf build

# Which kernel the modules are built against. The host may run a kernel whose
# modules cannot be loaded anywhere here, so never use `uname -r`: take the
# newest tree under /lib/modules that has a build directory. Override with
# KVER=<version> or KDIR=<kernel build tree>.
KVER ?= $(shell ls -d /lib/modules/*/build 2>/dev/null | sed 's|/lib/modules/||;s|/build||' | sort -V | tail -n 1)
KDIR ?= /lib/modules/$(KVER)/build

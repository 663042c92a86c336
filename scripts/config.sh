#!/bin/sh
# Writes the build configuration (compiler and linker flags from pkg-config)
# as a Makefile fragment on stdout. Run by the Makefile after scripts/deps.sh.
set -eu
pc="xenstore xenevtchn xengnttab sdl2 libnbd liburing json-c zlib libzstd gnutls"
for p in $pc check; do
    pkg-config --exists "$p" || { echo "config.sh: pkg-config cannot find $p" >&2; exit 1; }
done
echo "PKG_CFLAGS := $(pkg-config --cflags $pc check | sed 's/-I/-isystem /g')"
echo "PKG_LIBS := $(pkg-config --libs $pc)"
echo "CHECK_LIBS := $(pkg-config --libs check)"

# diskdm — one non-recursive GNU Make build.
#
#   make                 all programs into build/
#   make check           every test suite (unit, traces, interop)
#   make check-asan      the same suite built with ASan+UBSan into build-asan/
#   make fuzz            libFuzzer targets (clang) into build-fuzz/
#   make bench           benchmarks against peers (prints ratios)
#   make install         PREFIX (default /usr/local) and DESTDIR honoured
#   make clean
#
# Each folder adds to the build through its own module.mk: library folders
# (util, block, hw, xen) are archived whole; programs and tests register
# themselves in PROGRAMS / UNIT_TESTS.

.DEFAULT_GOAL := all
.SUFFIXES:
.DELETE_ON_ERROR:

BUILD   ?= build
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DESTDIR ?=
SAN     ?=
V       ?=

CC      ?= cc
ifeq ($(CC),cc)
CC := gcc
endif
AR      ?= ar

Q := $(if $(V),,@)

NO_CONFIG_GOALS := clean distclean deps help
ifneq ($(filter-out $(NO_CONFIG_GOALS),$(or $(MAKECMDGOALS),all)),)
include $(BUILD)/config.mk
endif

# Installing missing packages comes first: config.mk is remade (and make
# restarts) before anything is compiled.
$(BUILD)/config.mk: scripts/deps.sh scripts/config.sh
	$(Q)mkdir -p $(BUILD)
	$(Q)sh scripts/deps.sh
	$(Q)sh scripts/config.sh > $@.tmp && mv $@.tmp $@

deps:
	$(Q)sh scripts/deps.sh

OPT_CFLAGS := -O2
SAN_FLAGS :=
ifneq ($(SAN),)
OPT_CFLAGS := -O1
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

CFLAGS_ALL = -std=gnu11 -g $(OPT_CFLAGS) $(SAN_FLAGS) -Wall -Wextra -Werror \
	-Wno-unused-parameter -Wno-missing-field-initializers \
	-D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I. -MMD -MP $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SAN_FLAGS) -pthread $(LDFLAGS)

# Library folders, lowest layer last on the link line.
LIB_DIRS := xen hw block util
define LIB_template
$(1)_OBJS := $$(patsubst %.c,$(BUILD)/%.o,$$(sort $$(wildcard $(1)/*.c)))
$(BUILD)/lib$(1).a: $$($(1)_OBJS)
	$$(Q)rm -f $$@
	$$(Q)$$(AR) rcs $$@ $$^
endef
$(foreach d,$(LIB_DIRS),$(eval $(call LIB_template,$(d))))
ALL_LIBS := $(foreach d,$(LIB_DIRS),$(BUILD)/lib$(d).a)

PROGRAMS :=
UNIT_TESTS :=
BENCHES :=
FUZZERS :=
include $(sort $(wildcard */module.mk tools/*/module.mk tests/*/module.mk))

# A program NAME has NAME_SRCS; it links every library folder.
define PROG_template
$(1)_OBJS := $$(patsubst %.c,$(BUILD)/%.o,$$($(1)_SRCS))
$(BUILD)/$(1): $$($(1)_OBJS) $$(ALL_LIBS)
	@echo "  LINK    $$@"
	$$(Q)$$(CC) $$(LDFLAGS_ALL) -o $$@ $$($(1)_OBJS) $$(ALL_LIBS) $$(PKG_LIBS) $$($(1)_LDLIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call PROG_template,$(p))))

# tests/unit/test-X.c -> $(BUILD)/tests/unit/test-X, linked with Check.
define UNIT_template
$(BUILD)/tests/unit/$(1): $(BUILD)/tests/unit/$(1).o $$(ALL_LIBS)
	@echo "  LINK    $$@"
	$$(Q)$$(CC) $$(LDFLAGS_ALL) -o $$@ $$< $$(ALL_LIBS) $$(PKG_LIBS) $$(CHECK_LIBS)
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call UNIT_template,$(t))))

# tests/bench/X.c -> $(BUILD)/tests/bench/X
define BENCH_template
$(BUILD)/tests/bench/$(1): $(BUILD)/tests/bench/$(1).o $$(ALL_LIBS)
	@echo "  LINK    $$@"
	$$(Q)$$(CC) $$(LDFLAGS_ALL) -o $$@ $$< $$(ALL_LIBS) $$(PKG_LIBS)
endef
$(foreach t,$(BENCHES),$(eval $(call BENCH_template,$(t))))

$(BUILD)/%.o: %.c | $(BUILD)/config.mk
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -c -o $@ $<

PROG_BINS := $(addprefix $(BUILD)/,$(PROGRAMS))
UNIT_BINS := $(addprefix $(BUILD)/tests/unit/,$(UNIT_TESTS))
BENCH_BINS := $(addprefix $(BUILD)/tests/bench/,$(BENCHES))

all: $(PROG_BINS)
tests: $(PROG_BINS) $(UNIT_BINS) $(BENCH_BINS)

# The whole suite; tests/run.sh prints one summary line and fails on any
# failure (and, with CI=true or STRICT=1, on any skip).
check: tests
	$(Q)BUILD=$(BUILD) sh tests/run.sh $(CHECK_ARGS)

check-asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 check

bench: tests
	$(Q)BUILD=$(BUILD) sh tests/bench/all.sh

# libFuzzer targets need clang; each tests/fuzz/fuzz-X.c links every library.
FUZZ_BUILD := build-fuzz
fuzz:
	$(Q)$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang \
		CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -O1 -Wno-unknown-warning-option" fuzz-bins
define FUZZ_template
$(BUILD)/tests/fuzz/$(1): $(BUILD)/tests/fuzz/$(1).o $$(ALL_LIBS)
	@echo "  LINK    $$@"
	$$(Q)$$(CC) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -pthread -o $$@ $$< $$(ALL_LIBS) $$(PKG_LIBS)
endef
$(foreach t,$(FUZZERS),$(eval $(call FUZZ_template,$(t))))
fuzz-bins: $(addprefix $(BUILD)/tests/fuzz/,$(FUZZERS))

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(PROG_BINS) $(DESTDIR)$(BINDIR)/
	for m in $(wildcard docs/*.1); do install -m 0644 $$m $(DESTDIR)$(MANDIR)/man1/; done
	for m in $(wildcard docs/*.8); do install -m 0644 $$m $(DESTDIR)$(MANDIR)/man8/; done

clean:
	rm -rf build build-asan build-fuzz

help:
	@sed -n '2,12p' Makefile

.PHONY: all tests check check-asan bench fuzz fuzz-bins install clean deps help

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

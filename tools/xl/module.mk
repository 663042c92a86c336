PROGRAMS += diskdm-xl
diskdm-xl_SRCS := $(sort $(wildcard tools/xl/*.c))

# The README's first command: the whole story on this machine, see
# scripts/demo.sh.
demo: all
	$(Q)sh scripts/demo.sh
.PHONY: demo

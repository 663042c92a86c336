PROGRAMS += diskdm-trace
diskdm-trace_SRCS := $(sort $(wildcard tools/trace/*.c))

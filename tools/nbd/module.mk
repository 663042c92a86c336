PROGRAMS += diskdm-nbd
diskdm-nbd_SRCS := $(sort $(wildcard tools/nbd/*.c))

PROGRAMS += diskdm-img
diskdm-img_SRCS := $(sort $(wildcard tools/img/*.c))

PROGRAMS += diskdm-vhost
diskdm-vhost_SRCS := $(sort $(wildcard tools/vhost/*.c))

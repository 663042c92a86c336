# diskdm-xenstored: a xenstore daemon on Unix sockets (tools/xenstored/).
PROGRAMS += diskdm-xenstored
diskdm-xenstored_SRCS := $(wildcard tools/xenstored/*.c)

# The libxenstore test runs the daemon code in a child process it forks;
# the unit tests #include the daemon's sources, so they rebuild with them.

# diskdm, the device model: its main stays at the top of the tree
# (diskdm.c) as DESIGN.md lays out; it links every library folder.
PROGRAMS += diskdm
diskdm_SRCS := diskdm.c

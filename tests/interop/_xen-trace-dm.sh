#!/bin/sh
# Stand-in device model for diskdm-trace (used by xen-traces.sh): takes the
# `-drive` options diskdm-trace passes, writes the same disks to xenstore as
# a domain's vbds through diskdm-xl (readonly=on -> access=ro, i.e. mode=r),
# then becomes `diskdm --domid $XEN_TRACE_DOMID` with the other arguments,
# so the trace runs against disks that came from xenstore. Paths and
# arguments are diskdm-trace's own and hold no spaces.
set -eu
: "${XEN_TRACE_DOMID:?}" "${XL:?}" "${DISKDM:?}"
D=$XEN_TRACE_DOMID
xl_args="" dm_args="" vd=0
while [ $# -gt 0 ]; do
    if [ "$1" != -drive ]; then
        dm_args="$dm_args $1"
        shift
        continue
    fi
    file="" index="" media=disk access=rw extra="" iface=ide
    for kv in $(echo "$2" | tr ',' ' '); do
        case $kv in
        file=*) file=${kv#file=} ;;
        format=raw|if=ide) ;;
        if=virtio) iface=virtio ;;
        index=*) index=${kv#index=} ;;
        media=*) media=${kv#media=} ;;
        readonly=on|read-only=on) access=ro ;;
        readonly=off|read-only=off) ;;
        discard=unmap|discard=on) extra="$extra,discard" ;;
        *) echo "_xen-trace-dm.sh: unsupported drive option $kv" >&2; exit 1 ;;
        esac
    done
    if [ $iface = virtio ]; then
        # virtio drives take slots in order, as vda, vdb, ... do by devid
        vd=$((vd + 1))
        vdev=vd$(echo abcdefgh | cut -c$vd)
    else
        vdev=hd$(echo abcd | cut -c$((index + 1)))
    fi
    if [ "$media" = cdrom ]; then
        xl_args="$xl_args --disk $file,raw,$vdev,ro,devtype=cdrom$extra"
    else
        xl_args="$xl_args --disk $file,raw,$vdev,$access$extra"
    fi
    shift 2
done
# shellcheck disable=SC2086
"$XL" create --domid "$D" --no-start $xl_args
xenstore-write "/local/domain/$D/image/device-model-pid" $$
# shellcheck disable=SC2086
exec "$DISKDM" --domid "$D" $dm_args

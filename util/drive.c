/*
 * util/drive.c — `-drive` option strings (QEMU's keys and, where QEMU has
 * them, its error messages) into struct disk_spec, controller slot checks
 * and assignment, and the names of the shared block enumerations.
 */
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cache_mode_names[] = {
    [CACHE_WRITEBACK] = "writeback",
    [CACHE_NONE] = "none",
    [CACHE_WRITETHROUGH] = "writethrough",
    [CACHE_DIRECTSYNC] = "directsync",
    [CACHE_UNSAFE] = "unsafe",
    NULL,
};

/* "off" and "on" are QEMU's aliases: index % 2 is the discard_mode. */
const char *const discard_mode_names[] = {
    [DISCARD_IGNORE] = "ignore",
    [DISCARD_UNMAP] = "unmap",
    "off", "on",
    NULL,
};

const char *const detect_zeroes_names[] = {
    [DETECT_ZEROES_OFF] = "off",
    [DETECT_ZEROES_ON] = "on",
    [DETECT_ZEROES_UNMAP] = "unmap",
    NULL,
};

const char *const error_action_names[] = {
    [ERROR_ACTION_REPORT] = "report",
    [ERROR_ACTION_IGNORE] = "ignore",
    [ERROR_ACTION_STOP] = "stop",
    [ERROR_ACTION_ENOSPC] = "enospc",
    NULL,
};

/* Controller geometry: IDE has two channels of two drives; virtio-blk
 * disks are PCI functions on bus 0, one per slot. */
#define IDE_BUSES 2
#define IDE_UNITS 2
#define VIRTIO_MAX_INDEX 31
#define VIRTIO_MAX_QUEUES 1024

const char *disk_access_name(enum disk_access a)
{
    switch (a) {
    case DISK_ACCESS_RW: return "rw";
    case DISK_ACCESS_RO_FORCED: return "ro-forced";
    case DISK_ACCESS_AUTO: return "auto";
    case DISK_ACCESS_SNAPSHOT: return "snapshot";
    }
    return "?";
}

/* Defaults are QEMU's for -drive: werror=enospc, rerror=report. */
void disk_spec_init(struct disk_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->iface = DISK_IF_IDE;
    spec->index = spec->bus = spec->unit = -1;
    spec->media = DISK_MEDIA_DISK;
    spec->access = DISK_ACCESS_RW;
    spec->cache = CACHE_WRITEBACK;
    spec->discard = DISCARD_IGNORE;
    spec->detect_zeroes = DETECT_ZEROES_OFF;
    spec->werror = ERROR_ACTION_ENOSPC;
    spec->rerror = ERROR_ACTION_REPORT;
}

void disk_spec_free(struct disk_spec *spec)
{
    free(spec->file);
    free(spec->format);
    free(spec->serial);
    free(spec->id);
    spec->file = spec->format = spec->serial = spec->id = NULL;
}

/* ------------------------------------------------------------------ */
/* Slots                                                               */
/* ------------------------------------------------------------------ */

static int max_index(enum disk_if iface)
{
    return iface == DISK_IF_IDE ? IDE_BUSES * IDE_UNITS - 1 : VIRTIO_MAX_INDEX;
}

static int max_bus(enum disk_if iface)
{
    return iface == DISK_IF_IDE ? IDE_BUSES - 1 : 0;
}

static int max_unit(enum disk_if iface)
{
    return iface == DISK_IF_IDE ? IDE_UNITS - 1 : VIRTIO_MAX_INDEX;
}

/* Virtio has one "bus": its index and unit are the same number. */
static int slot_index(enum disk_if iface, int bus, int unit)
{
    return iface == DISK_IF_IDE ? bus * IDE_UNITS + unit : unit;
}

static int check_range(const char *what, uint64_t v, int max, struct error **errp)
{
    if (v > (uint64_t)max) {
        error_setg(errp, "%s %llu too big (max is %d)", what, (unsigned long long)v, max);
        return -EINVAL;
    }
    return 0;
}

int disk_spec_resolve(struct disk_spec *spec, struct error **errp)
{
    enum disk_if iface = spec->iface;

    if (spec->index < -1 || spec->bus < -1 || spec->unit < -1) {
        error_setg(errp, "negative drive address (index=%d, bus=%d, unit=%d)",
                   spec->index, spec->bus, spec->unit);
        return -EINVAL;
    }
    if (spec->index != -1) {
        if (check_range("index", spec->index, max_index(iface), errp) < 0) {
            return -EINVAL;
        }
        int bus = iface == DISK_IF_IDE ? spec->index / IDE_UNITS : 0;
        int unit = iface == DISK_IF_IDE ? spec->index % IDE_UNITS : spec->index;
        /* A spec resolved before passes again unchanged. */
        if ((spec->bus != -1 || spec->unit != -1) &&
            (spec->bus != bus || spec->unit != unit)) {
            error_setg(errp, "index cannot be used with bus and unit");
            return -EINVAL;
        }
        spec->bus = bus;
        spec->unit = unit;
        return 0;
    }
    if (spec->bus != -1 && check_range("bus", spec->bus, max_bus(iface), errp) < 0) {
        return -EINVAL;
    }
    if (spec->unit != -1 && check_range("unit", spec->unit, max_unit(iface), errp) < 0) {
        return -EINVAL;
    }
    /* As in QEMU, a unit without a bus is on bus 0. */
    if (spec->unit != -1 && spec->bus == -1) {
        spec->bus = 0;
    }
    if (spec->bus != -1 && spec->unit != -1) {
        spec->index = slot_index(iface, spec->bus, spec->unit);
    }
    return 0;
}

static bool slot_taken(const struct disk_spec *specs, size_t n, enum disk_if iface,
                       int bus, int unit)
{
    for (size_t i = 0; i < n; i++) {
        if (specs[i].iface == iface && specs[i].bus == bus && specs[i].unit == unit) {
            return true;
        }
    }
    return false;
}

/*
 * Like QEMU, in command-line order: a drive with no unit takes the first
 * free unit from its bus (bus 0 if none was given) onwards, so a later
 * drive naming an explicit slot can collide with an earlier automatic one.
 */
int disk_spec_assign_slots(struct disk_spec *specs, size_t n, struct error **errp)
{
    for (size_t i = 0; i < n; i++) {
        struct disk_spec *s = &specs[i];
        enum disk_if iface = s->iface;
        if (s->unit == -1) {
            int bus = s->bus == -1 ? 0 : s->bus;
            int unit = 0;
            while (slot_taken(specs, i, iface, bus, unit)) {
                if (++unit > max_unit(iface)) {
                    unit = 0;
                    bus++;
                }
                if (bus > max_bus(iface)) {
                    error_setg(errp, "too many %s drives (max is %d)",
                               iface == DISK_IF_IDE ? "IDE" : "virtio",
                               max_index(iface) + 1);
                    return -EINVAL;
                }
            }
            s->bus = bus;
            s->unit = unit;
            s->index = slot_index(iface, bus, unit);
        } else if (s->bus == -1) {
            s->bus = 0;
            s->index = slot_index(iface, s->bus, s->unit);
        }
        if (slot_taken(specs, i, iface, s->bus, s->unit)) {
            error_setg(errp, "drive with bus=%d, unit=%d (index=%d) exists",
                       s->bus, s->unit, s->index);
            return -EINVAL;
        }
        if (!s->id) {
            int r;
            if (iface == DISK_IF_IDE) {
                r = asprintf(&s->id, "ide%d-%s%d", s->bus,
                             s->media == DISK_MEDIA_CDROM ? "cd" : "hd", s->unit);
            } else {
                r = asprintf(&s->id, "virtio%d", s->unit);
            }
            if (r < 0) {
                s->id = NULL;
                error_setg_errno(errp, ENOMEM, "Cannot name drive");
                return -ENOMEM;
            }
        }
        for (size_t j = 0; j < i; j++) {
            if (specs[j].id && !strcmp(specs[j].id, s->id)) {
                error_setg(errp, "Duplicate ID '%s' for drive", s->id);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* -drive                                                              */
/* ------------------------------------------------------------------ */

/* The keys as written; meaning is given to them in disk_spec_parse_drive. */
struct drive_opts {
    char *file, *format, *iface, *media, *werror, *rerror, *serial, *id;
    bool readonly, readonly_set;
    bool read_only, read_only_set;
    bool auto_read_only, snapshot;
    uint64_t index, bus, unit, num_queues;
    bool index_set, bus_set, unit_set, num_queues_set;
    int cache, discard, detect_zeroes;
};

#define DO(f) offsetof(struct drive_opts, f)
static const struct opt_field drive_fields[] = {
    { "file", OPT_STRING, DO(file), OPT_NO_SET, NULL },
    { "format", OPT_STRING, DO(format), OPT_NO_SET, NULL },
    { "if", OPT_STRING, DO(iface), OPT_NO_SET, NULL },
    { "index", OPT_UINT, DO(index), DO(index_set), NULL },
    { "bus", OPT_UINT, DO(bus), DO(bus_set), NULL },
    { "unit", OPT_UINT, DO(unit), DO(unit_set), NULL },
    { "media", OPT_STRING, DO(media), OPT_NO_SET, NULL },
    { "readonly", OPT_BOOL, DO(readonly), DO(readonly_set), NULL },
    { "read-only", OPT_BOOL, DO(read_only), DO(read_only_set), NULL },
    { "auto-read-only", OPT_BOOL, DO(auto_read_only), OPT_NO_SET, NULL },
    { "snapshot", OPT_BOOL, DO(snapshot), OPT_NO_SET, NULL },
    { "cache", OPT_ENUM, DO(cache), OPT_NO_SET, cache_mode_names },
    { "werror", OPT_STRING, DO(werror), OPT_NO_SET, NULL },
    { "rerror", OPT_STRING, DO(rerror), OPT_NO_SET, NULL },
    { "discard", OPT_ENUM, DO(discard), OPT_NO_SET, discard_mode_names },
    { "detect-zeroes", OPT_ENUM, DO(detect_zeroes), OPT_NO_SET, detect_zeroes_names },
    { "serial", OPT_STRING, DO(serial), OPT_NO_SET, NULL },
    { "id", OPT_STRING, DO(id), OPT_NO_SET, NULL },
    { "num-queues", OPT_UINT, DO(num_queues), DO(num_queues_set), NULL },
    { NULL },
};
#undef DO

/* QEMU's identifier rule for ids. */
static bool is_identifier(const char *s)
{
    if (!isalpha((unsigned char)s[0])) {
        return false;
    }
    for (const char *p = s + 1; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_') {
            return false;
        }
    }
    return true;
}

/* QEMU: rerror has no "enospc". */
static int parse_error_action(const char *s, bool is_read, enum error_action *out,
                              struct error **errp)
{
    for (int i = 0; error_action_names[i]; i++) {
        if (!strcmp(s, error_action_names[i]) &&
            !(is_read && i == ERROR_ACTION_ENOSPC)) {
            *out = i;
            return 0;
        }
    }
    error_setg(errp, "'%s' invalid %s error action", s, is_read ? "read" : "write");
    return -EINVAL;
}

static char *take(char **p)
{
    char *s = *p;
    *p = NULL;
    return s;
}

/*
 * Access mode, strictest first: read-only (also implied by media=cdrom,
 * as in QEMU) beats snapshot, which beats auto-read-only. QEMU gives a
 * read-only snapshot overlay for readonly=on,snapshot=on, which the guest
 * sees as a read-only disk: the same as ro-forced.
 */
static enum disk_access drive_access(const struct drive_opts *o, enum disk_media media)
{
    bool ro = o->readonly || o->read_only || media == DISK_MEDIA_CDROM;
    if (ro) {
        return DISK_ACCESS_RO_FORCED;
    }
    if (o->snapshot) {
        return DISK_ACCESS_SNAPSHOT;
    }
    if (o->auto_read_only) {
        return DISK_ACCESS_AUTO;
    }
    return DISK_ACCESS_RW;
}

/*
 * The keys -drive takes beyond its own: QEMU's NBD form, driver=nbd with
 * server.*, export and timeout, or the same keys under "file." (the
 * export as the protocol under the format). Their URI (util/nbd-uri.c)
 * becomes the file; driver=nbd makes the format "nbd". Any other key is
 * unknown.
 */
static int drive_nbd_keys(const struct kvlist *rest, struct drive_opts *o,
                          struct error **errp)
{
    const char *keys[NBD_URI_NKEYS] = { 0 };
    const char *prefix = NULL, *first = NULL;
    bool driver_nbd = false, address = false;

    for (size_t i = 0; i < rest->n; i++) {
        const char *full = rest->v[i].key, *key = full, *val = rest->v[i].value;
        const char *pre = "";
        if (!strncmp(key, "file.", 5)) {
            key += 5;
            pre = "file.";
        }
        int idx = nbd_uri_key(key);
        bool is_driver = !strcmp(key, "driver");
        if ((idx < 0 && !is_driver) || (prefix && strcmp(prefix, pre))) {
            error_setg(errp, "Invalid parameter '%s'", full);
            return -EINVAL;
        }
        prefix = pre;
        if (is_driver) {
            if (strcmp(val, "nbd")) {
                error_setg(errp, "Parameter '%s' expects 'nbd' (the format is "
                           "format=): '%s'", full, val);
                return -EINVAL;
            }
            driver_nbd = !*pre;
            continue;
        }
        if (keys[idx]) {
            error_setg(errp, "Parameter '%s' given twice", full);
            return -EINVAL;
        }
        keys[idx] = val;
        address |= idx < 5;   /* not timeout or reconnect-delay */
        if (!first) {
            first = full;
        }
    }
    if (driver_nbd) {
        if (o->format) {
            error_setg(errp, "Cannot specify both 'driver' and 'format'");
            return -EINVAL;
        }
        o->format = strdup("nbd");
        if (!o->format) {
            error_setg(errp, "Out of memory");
            return -ENOMEM;
        }
    }
    if (!first) {
        return 0;
    }
    char *uri = NULL;
    if (address) {
        if (o->file) {
            error_setg(errp, "'file' cannot be combined with '%sserver.*' or "
                       "'%sexport'", prefix, prefix);
            return -EINVAL;
        }
        int ret = nbd_uri_from_keys(keys, prefix, &uri, errp);
        if (ret < 0) {
            return ret;
        }
    } else {
        /* timeout alone: on an NBD URI given as the file */
        if (!nbd_uri_is_nbd(o->file)) {
            error_setg(errp, "Parameter '%s' needs an NBD export (an nbd:// URI or "
                       "server.* options)", first);
            return -EINVAL;
        }
        uri = take(&o->file);
        if (nbd_uri_add_param(&uri, "timeout", keys[5]) < 0 ||
            nbd_uri_add_param(&uri, "reconnect-delay", keys[6]) < 0) {
            free(uri);
            error_setg(errp, "Out of memory");
            return -ENOMEM;
        }
    }
    free(o->file);
    o->file = uri;
    return 0;
}

int disk_spec_parse_drive(const char *str, struct disk_spec *spec,
                          struct error **errp)
{
    struct drive_opts o = { 0 };
    int ret;

    disk_spec_init(spec);
    struct kvlist kv, rest = { 0 };
    ret = opts_split(str, NULL, &kv, errp);
    if (ret < 0) {
        goto out_free_opts;
    }
    ret = opts_apply(&kv, drive_fields, &o, &rest, errp);
    kvlist_free(&kv);
    if (ret == 0) {
        ret = drive_nbd_keys(&rest, &o, errp);
    }
    kvlist_free(&rest);
    if (ret < 0) {
        goto out_free_opts;
    }
    ret = -EINVAL;
    if (o.readonly_set && o.read_only_set) {
        error_setg(errp, "'read-only' and its alias 'readonly' can't be used at the same time");
        goto out_free_opts;
    }

    if (o.iface) {
        if (!strcmp(o.iface, "ide")) {
            spec->iface = DISK_IF_IDE;
        } else if (!strcmp(o.iface, "virtio")) {
            spec->iface = DISK_IF_VIRTIO;
        } else {
            error_setg(errp, "Unsupported interface '%s'", o.iface);
            goto out_free_opts;
        }
    }
    if (o.media) {
        if (!strcmp(o.media, "disk")) {
            spec->media = DISK_MEDIA_DISK;
        } else if (!strcmp(o.media, "cdrom")) {
            spec->media = DISK_MEDIA_CDROM;
        } else {
            error_setg(errp, "'%s' invalid media", o.media);
            goto out_free_opts;
        }
    }
    if (spec->media == DISK_MEDIA_CDROM && spec->iface == DISK_IF_VIRTIO) {
        error_setg(errp, "media=cdrom is not supported with if=virtio");
        goto out_free_opts;
    }
    if (o.werror && parse_error_action(o.werror, false, &spec->werror, errp) < 0) {
        goto out_free_opts;
    }
    if (o.rerror && parse_error_action(o.rerror, true, &spec->rerror, errp) < 0) {
        goto out_free_opts;
    }
    if (o.id && !is_identifier(o.id)) {
        error_setg(errp, "Parameter 'id' expects an identifier");
        goto out_free_opts;
    }
    if (o.num_queues_set) {
        if (spec->iface != DISK_IF_VIRTIO) {
            error_setg(errp, "num-queues is not supported by this bus type");
            goto out_free_opts;
        }
        if (o.num_queues < 1 || o.num_queues > VIRTIO_MAX_QUEUES) {
            error_setg(errp, "num-queues %llu out of range (1 to %d)",
                       (unsigned long long)o.num_queues, VIRTIO_MAX_QUEUES);
            goto out_free_opts;
        }
        spec->num_queues = (unsigned)o.num_queues;
    }

    if (o.index_set && (o.bus_set || o.unit_set)) {
        error_setg(errp, "index cannot be used with bus and unit");
        goto out_free_opts;
    }
    /* Range-check while still 64-bit, so that the casts below are exact. */
    if (o.index_set && check_range("index", o.index, max_index(spec->iface), errp) < 0) {
        goto out_free_opts;
    }
    if (o.bus_set && check_range("bus", o.bus, max_bus(spec->iface), errp) < 0) {
        goto out_free_opts;
    }
    if (o.unit_set && check_range("unit", o.unit, max_unit(spec->iface), errp) < 0) {
        goto out_free_opts;
    }
    if (o.index_set) {
        spec->index = (int)o.index;
    }
    if (o.bus_set) {
        spec->bus = (int)o.bus;
    }
    if (o.unit_set) {
        spec->unit = (int)o.unit;
    }
    if (disk_spec_resolve(spec, errp) < 0) {
        goto out_free_opts;
    }

    spec->cache = o.cache;
    spec->discard = o.discard % 2;
    spec->detect_zeroes = o.detect_zeroes;
    spec->access = drive_access(&o, spec->media);

    if (o.file && !*o.file) {
        free(take(&o.file));            /* file= : no medium */
    }
    if (!o.file && spec->media == DISK_MEDIA_DISK) {
        error_setg(errp, "Device needs media, but drive is empty");
        goto out_free_opts;
    }
    spec->file = take(&o.file);
    spec->format = take(&o.format);
    spec->serial = take(&o.serial);
    spec->id = take(&o.id);
    ret = 0;

out_free_opts:
    opts_free(drive_fields, &o);
    if (ret < 0) {
        disk_spec_free(spec);
        disk_spec_init(spec);
    }
    return ret;
}

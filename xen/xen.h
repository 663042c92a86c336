/*
 * xen/xen.h — diskdm's Xen side: a domain's disks read from the libxl
 * xenstore layout into `struct disk_spec` (xs-config.c), the running device
 * model's watches on those keys (xs-watch.c) and what it reports back to the
 * toolstack (dm-state.c). Layer: util <- block <- hw <- xen <- diskdm.c.
 */
#ifndef DISKDM_XEN_H
#define DISKDM_XEN_H

#include "hw/hw.h"

struct xs_handle;

/* ------------------------------------------------------------------ */
/* Names and values (xs-config.c): pure parsers, no xenstore access     */
/* ------------------------------------------------------------------ */

/*
 * A virtual device name as libxl understands it: `hd[a-d]N`, `sd[a-p]N`,
 * `xvd<letters>N`, `vd<letters>N` or a plain decimal devid. Returns the
 * devid (libxl's formula; `vd` names, which libxl lacks, use major 254 the
 * way `xvd` uses 202) or -EINVAL. *disk and *partition (either may be NULL)
 * get the disk number (bijective base 26, a = 0) and partition (0 = whole).
 */
int xen_vdev_devid(const char *vdev, int *disk, int *partition);

/*
 * The backend `mode` key: "r" -> DISK_ACCESS_RO_FORCED, "w" -> DISK_ACCESS_RW,
 * "w!" -> DISK_ACCESS_RW with *no_locking set (the "!" means: skip the
 * check for other writers). NULL (missing) and anything else fail with
 * -EINVAL and a message: a disk is never writable by default.
 */
int xen_parse_mode(const char *mode, enum disk_access *access,
                   bool *no_locking, struct error **errp);

/*
 * Open a xenstore disk's image as its `mode` says (xs-watch.c): a mode=r
 * spec (DISK_ACCESS_RO_FORCED) is opened read-only at every layer but not
 * marked forced, so that a later mode=w may reopen it read-write;
 * `no_locking` (mode w!) turns image locking off. NULL with *errp set on
 * failure.
 */
struct bdrv_node *xen_open_image(const struct disk_spec *spec, bool no_locking,
                                 struct error **errp);

/*
 * The backend `params` key, "[fmt:]path". Known prefixes: aio/raw/file/phy
 * (raw), qcow, qcow2, vhd, qed, tap/tap2 (format left unset). *format is
 * NULL when the string names none; *path is "" for an empty CD-ROM. Both
 * are malloc'ed. -EINVAL with a message for an unknown prefix.
 */
int xen_parse_params(const char *params, char **format, char **path,
                     struct error **errp);

/* ------------------------------------------------------------------ */
/* A domain's disks in xenstore (xs-config.c)                          */
/* ------------------------------------------------------------------ */

/* What the device model does with a vbd it found. */
enum xen_disk_kind {
    XEN_DISK_EMULATED,      /* attach to IDE or virtio-blk */
    XEN_DISK_PV_ONLY,       /* xvd / sd without specification=virtio: not ours */
    XEN_DISK_REJECTED,      /* bad configuration: `error` says why */
};

struct xen_disk_cfg {
    int devid;
    char *fe_path;          /* /local/domain/<domid>/device/vbd/<devid> */
    char *be_path;          /* the frontend's `backend`; NULL if missing */
    char *vdev;             /* backend `dev` */
    enum xen_disk_kind kind;
    bool linked;            /* frontend and backend point at each other, so
                             * the backend is this disk's to report into */
    char *error;            /* XEN_DISK_REJECTED: the reason, else NULL */
    bool no_locking;        /* mode "w!" */
    char *mode;             /* raw `mode` value (NULL = missing) */
    char *params;           /* raw `params` value */
    struct disk_spec spec;  /* valid for XEN_DISK_EMULATED */
};

/*
 * Read one vbd (`devid_name` is the directory entry under the frontend's
 * device/vbd) into *d. Configuration problems do not fail the call: they
 * give kind XEN_DISK_REJECTED with `error` set. Returns -errno only when
 * xenstore itself fails (message set).
 */
int xen_disk_cfg_read(struct xs_handle *xs, int domid, const char *devid_name,
                      struct xen_disk_cfg *d, struct error **errp);
void xen_disk_cfg_free(struct xen_disk_cfg *d);

/*
 * Every vbd of `domid`, in devid order. *disks is malloc'ed (free each with
 * xen_disk_cfg_free, then the array). A domain without device/vbd has no
 * disks (0 returned, *n = 0).
 */
int xen_disks_read(struct xs_handle *xs, int domid, struct xen_disk_cfg **disks,
                   size_t *n, struct error **errp);

/* Backend directory for a vbd: /local/domain/0/backend/<type>/<domid>/<devid>. */
char *xen_backend_path(const char *type, int domid, int devid);
char *xen_frontend_path(int domid, int devid);

/* ------------------------------------------------------------------ */
/* xl's disk specification syntax (xl-disk.c)                          */
/* ------------------------------------------------------------------ */

/*
 * A disk as `xl` reads it from "target,format,vdev,access" positional and
 * key=value forms (xl-disk-configuration), including the deprecated
 * "fmt:target,vdev:devtype,access" shapes. Strings are owned.
 */
enum xen_xl_spec { XEN_XL_SPEC_UNSET, XEN_XL_SPEC_XEN, XEN_XL_SPEC_VIRTIO };

struct xen_xl_disk {
    char *target;           /* image path; NULL or "" = none (empty CD-ROM) */
    char *vdev;             /* "hda", "xvdb", ... */
    char *script;           /* script=, or block-<proto> from a prefix */
    char *backend_domname;  /* backend= */
    const char *format;     /* "raw", "qcow", "qcow2", "vhd", "qed", "empty" */
    const char *backendtype;/* "phy", "tap", "qdisk", "standalone"; NULL = choose */
    enum xen_xl_spec specification;
    int discard_enable;     /* discard / no-discard flags: 1 / 0; -1 unsaid */
    bool readwrite;
    bool is_cdrom;
    bool removable;
};

/*
 * Parse the parts of one disk spec (xl joins its command-line words this
 * way). `source` names where the text came from ("command line"). Errors
 * carry xl's wording: "<source>: config parsing error in disk
 * specification: unknown value for access: near `x' in `<spec>'".
 */
int xen_xl_disk_parse(const char *const *parts, int nparts, const char *source,
                      struct xen_xl_disk *disk, struct error **errp);
void xen_xl_disk_free(struct xen_xl_disk *disk);

/* ------------------------------------------------------------------ */
/* xl domain config files (xl-cfg.c)                                   */
/* ------------------------------------------------------------------ */

/* One value: a string ("..." or '...', escapes undone) or a number,
 * kept as written. */
struct xen_cfg_item {
    char *str;
    bool is_number;
    int line, col;          /* where it starts, from 1 */
};

/* `key = value`, the value one atom or a [list] of atoms. */
struct xen_cfg_setting {
    char *key;
    char *source;           /* the file name, or "command line" */
    int line, col;          /* of the key */
    int vline, vcol;        /* of the value */
    bool is_list;
    struct xen_cfg_item *items; /* one unless is_list */
    size_t n;
};

/* Settings in the order read; a later one of a key replaces earlier ones. */
struct xen_cfg {
    struct xen_cfg_setting *settings;
    size_t n;
};

/*
 * Read xl.cfg(5) text (`len` bytes, NULs refused) and append its settings
 * to *cfg (zeroed before the first call). Errors add nothing and name the
 * place: "<source>:<line>:<col>: config parsing error: unterminated string".
 * Call again with "KEY=VALUE" text to override keys, as `xl create` does.
 */
int xen_cfg_parse(struct xen_cfg *cfg, const char *source, const char *text,
                  size_t len, struct error **errp);
/* The last setting of `key`, or NULL. */
const struct xen_cfg_setting *xen_cfg_find(const struct xen_cfg *cfg, const char *key);
void xen_cfg_free(struct xen_cfg *cfg);

/* What diskdm-xl takes from a domain config. Strings are owned. */
struct xen_xl_domain {
    char *name;                 /* `name`; NULL if unset */
    struct xen_xl_disk *disks;  /* `disk = [ 'spec', ... ]` */
    char **disk_lines;          /* "<file>:<line>:<col>" of each disk spec */
    size_t ndisks;
    char **dm_args;             /* device_model_args (+ _hvm), NULL-ended */
    size_t ndm_args;
    char *dm_override;          /* device_model_override: the diskdm binary */
    char **ignored;             /* other keys, first-seen order, each once */
    size_t nignored;
};

/*
 * Pick the settings above out of *cfg. A setting of the wrong type and a
 * bad disk spec fail with the place named ("guest.cfg:4:5: config parsing
 * error in disk specification: ..."). d is zeroed on failure.
 */
int xen_xl_domain_from_cfg(const struct xen_cfg *cfg, struct xen_xl_domain *d,
                           struct error **errp);
void xen_xl_domain_free(struct xen_xl_domain *d);

/* ------------------------------------------------------------------ */
/* Reporting to the toolstack (dm-state.c)                             */
/* ------------------------------------------------------------------ */

/* /local/domain/0/device-model/<domid>/state = state ("running", "error"),
 * and when `message` is not NULL also .../error = message. 0 or -errno. */
int xen_dm_write_state(struct xs_handle *xs, int domid, const char *state,
                       const char *message);
/* A disk's backend: hotplug-status=error and hotplug-error=message, as
 * libxl's hotplug scripts report failures. */
int xen_disk_write_error(struct xs_handle *xs, const char *be_path,
                         const char *message);

/* ------------------------------------------------------------------ */
/* The running device model (xs-watch.c)                               */
/* ------------------------------------------------------------------ */

struct xen_dm;

/*
 * Connect to xenstore (XENSTORED_PATH or the default socket), attach every
 * emulated disk of `domid` to `m`, watch their keys from `loop`, and write
 * state=running. Disks with a bad configuration are left out (reason logged
 * and written to their backend). On failure (xenstore unreachable, an image
 * that cannot be opened, a slot conflict) writes state=error plus the
 * message when xenstore is reachable, and returns NULL with *errp set.
 */
struct xen_dm *xen_dm_start(struct event_loop *loop, struct machine *m,
                            int domid, struct error **errp);
/* Detach and close every disk, drop the watches and the connection. */
void xen_dm_free(struct xen_dm *dm);
/* Number of disks attached right now (for tests and logs). */
size_t xen_dm_disk_count(const struct xen_dm *dm);

#endif

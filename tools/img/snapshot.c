/*
 * tools/img/snapshot.c — `diskdm-img snapshot`: list (-l), create (-c),
 * apply (-a) and delete (-d) internal snapshots, with qemu-img's list
 * format and messages.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* One line of the list, as qemu's bdrv_snapshot_dump (NULL: header). */
static void print_snapshot(const struct bdrv_snapshot *sn)
{
    if (!sn) {
        printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
               "ICOUNT");
        return;
    }
    char date[32], clock[64], size[32], icount[32] = "";
    time_t t = sn->date_sec;
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t secs = sn->vm_clock_nsec / 1000000000ull;
    snprintf(clock, sizeof(clock), "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64,
             secs / 3600, (secs / 60) % 60, secs % 60,
             (uint64_t)((sn->vm_clock_nsec / 1000000u) % 1000));
    img_size_to_str(sn->vm_state_size, size, sizeof(size));
    if (sn->icount != UINT64_MAX) {
        snprintf(icount, sizeof(icount), "%" PRIu64, sn->icount);
    }
    printf("%-9s %-16s %8s%20s%13s%11s\n", sn->id, sn->name, size, date, clock, icount);
}

int img_cmd_snapshot(int argc, char **argv)
{
    enum { OPT_IMAGE_OPTS = 256 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    enum { NONE, LIST, CREATE, APPLY, DELETE } action = NONE;
    const char *fmt = NULL, *name = NULL;
    struct img_open_flags fl = { .read_only = false };
    bool quiet = false;
    int c;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":la:c:d:f:hqU", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
        case 'a':
        case 'c':
        case 'd':
            if (action != NONE) {
                return img_usage_error("Cannot mix '-l', '-a', '-c', '-d'");
            }
            action = c == 'l' ? LIST : c == 'a' ? APPLY : c == 'c' ? CREATE : DELETE;
            name = c == 'l' ? NULL : optarg;
            break;
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            fl.force_share = true;
            break;
        case OPT_IMAGE_OPTS:
            fl.image_opts = true;
            break;
        case 'h':
            return img_cmd_help("snapshot");
        default:
            return img_bad_option_at(argv, c);
        }
    }
    if (optind != argc - 1) {
        img_print_synopsis(stderr, "snapshot");
        return img_usage_error("Expecting one image file name");
    }
    if (action == NONE) {
        action = LIST;      /* qemu-img lists when no action is given */
    }
    (void)quiet;            /* nothing is printed on success but the list */
    const char *filename = argv[optind];
    fl.read_only = action == LIST;
    struct bdrv_node *bs = img_open_ex(filename, fmt, &fl);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }
    struct error *err = NULL;
    int ret = 0;
    switch (action) {
    case LIST: {
        struct bdrv_snapshot *l = NULL;
        ret = bdrv_snapshot_list(bs, &l, &err);
        if (ret > 0) {
            printf("Snapshot list:\n");
            print_snapshot(NULL);
            for (int i = 0; i < ret; i++) {
                print_snapshot(&l[i]);
            }
            bdrv_snapshot_list_free(l, ret);
        }
        break;
    }
    case CREATE:
        ret = bdrv_snapshot_create(bs, name, &err);
        break;
    case APPLY:
        ret = bdrv_snapshot_apply(bs, name, &err);
        break;
    case DELETE:
        ret = bdrv_snapshot_delete(bs, name, &err);
        break;
    default:
        break;
    }
    if (ret < 0) {
        img_error("%s", err ? err->msg : strerror(-ret));
        error_free(err);
    }
    bdrv_unref(bs);
    return ret < 0 ? IMG_EXIT_FAIL : 0;
}

/*
 * tools/img/info.c — `diskdm-img info`: format, virtual and disk size of
 * an image, as text like qemu-img's or as JSON with qemu-img's keys.
 */
#include "tools/img/img.h"

#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static void print_human(const struct bdrv_info *in)
{
    char a[32], b[32];
    printf("image: %s\n", in->filename);
    printf("file format: %s\n", in->format);
    printf("virtual size: %s (%" PRIu64 " bytes)\n",
           img_size_to_str(in->virtual_size, a, sizeof(a)), in->virtual_size);
    if (in->actual_size >= 0) {
        printf("disk size: %s\n", img_size_to_str((uint64_t)in->actual_size, b, sizeof(b)));
    } else {
        printf("disk size: unavailable\n");
    }
    if (in->encrypted) {
        printf("encrypted: yes\n");
    }
    if (in->cluster_size) {
        printf("cluster_size: %" PRIu32 "\n", in->cluster_size);
    }
    if (in->backing_filename) {
        printf("backing file: %s", in->backing_filename);
        if (in->full_backing_filename && strcmp(in->full_backing_filename, in->backing_filename)) {
            printf(" (actual path: %s)", in->full_backing_filename);
        }
        printf("\n");
        if (in->backing_format) {
            printf("backing file format: %s\n", in->backing_format);
        }
    }
}

/* qemu-img's layout: four-space indents, "key": value, one per line. */
static void print_json_value(struct json_object *v, int depth)
{
    if (json_object_get_type(v) != json_type_object) {
        fputs(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                             JSON_C_TO_STRING_NOSLASHESCAPE), stdout);
        return;
    }
    bool first = true;
    printf("{");
    json_object_object_foreach(v, key, val) {
        printf("%s\n%*s\"%s\": ", first ? "" : ",", (depth + 1) * 4, "", key);
        print_json_value(val, depth + 1);
        first = false;
    }
    printf("\n%*s}", depth * 4, "");
}

static int print_json(const struct bdrv_info *in)
{
    struct json_object *o = json_object_new_object();
    if (!o) {
        return -1;
    }
    /* Key order as qemu-img prints it. */
    json_object_object_add(o, "virtual-size", json_object_new_int64((int64_t)in->virtual_size));
    json_object_object_add(o, "filename", json_object_new_string(in->filename));
    if (in->cluster_size) {
        json_object_object_add(o, "cluster-size", json_object_new_int64(in->cluster_size));
    }
    json_object_object_add(o, "format", json_object_new_string(in->format));
    if (in->actual_size >= 0) {
        json_object_object_add(o, "actual-size", json_object_new_int64(in->actual_size));
    }
    if (in->encrypted) {
        json_object_object_add(o, "encrypted", json_object_new_boolean(1));
    }
    if (in->backing_filename) {
        json_object_object_add(o, "backing-filename",
                               json_object_new_string(in->backing_filename));
        if (in->full_backing_filename) {
            json_object_object_add(o, "full-backing-filename",
                                   json_object_new_string(in->full_backing_filename));
        }
        if (in->backing_format) {
            json_object_object_add(o, "backing-filename-format",
                                   json_object_new_string(in->backing_format));
        }
    }
    json_object_object_add(o, "dirty-flag", json_object_new_boolean(in->dirty));
    print_json_value(o, 0);
    printf("\n");
    json_object_put(o);
    return 0;
}

int img_cmd_info(int argc, char **argv)
{
    enum { OPT_OUTPUT = 256 };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, OPT_OUTPUT },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const char *fmt = NULL;
    bool json = false, force_share = false;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "+f:Uh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            fmt = optarg;
            break;
        case 'U':
            force_share = true;
            break;
        case OPT_OUTPUT:
            if (!strcmp(optarg, "json")) {
                json = true;
            } else if (!strcmp(optarg, "human")) {
                json = false;
            } else {
                return img_usage_error("--output must be used with human or json as argument.");
            }
            break;
        case 'h':
            printf("Usage: diskdm-img info [-f FMT] [--output=human|json] [-U] FILENAME\n");
            return 0;
        default:
            return IMG_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    const char *filename = argv[optind];

    struct bdrv_node *bs = img_open(filename, fmt, true, force_share);
    if (!bs) {
        return IMG_EXIT_FAIL;
    }
    struct bdrv_info info;
    bdrv_get_info(bs, &info);
    /* qemu-img shows the name as given, not as the node stores it. */
    info.filename = filename;
    int ret = 0;
    if (json) {
        if (print_json(&info) < 0) {
            ret = img_error("Out of memory");
        }
    } else {
        print_human(&info);
    }
    bdrv_unref(bs);
    return ret;
}

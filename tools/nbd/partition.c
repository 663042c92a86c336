/*
 * tools/nbd/partition.c — finds partition N of an MBR (primary and logical
 * partitions) or GPT disk for -P, so the export can be a window onto it.
 * Reads through the block backend; every field is bounds-checked.
 */
#include "tools/nbd/export.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#define SECTOR 512u

static uint32_t le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

static bool is_extended(uint8_t type)
{
    return type == 0x05 || type == 0x0f || type == 0x85;
}

static int gpt_find(struct blk_backend *blk, int num, uint64_t disk,
                    uint64_t *offset, uint64_t *size, struct error **errp)
{
    uint8_t hdr[SECTOR];
    int rc = blk_pread(blk, SECTOR, hdr, SECTOR);
    if (rc < 0) {
        error_setg_errno(errp, -rc, "cannot read the GPT header");
        return rc;
    }
    if (memcmp(hdr, "EFI PART", 8) != 0) {
        error_setg(errp, "protective MBR but no GPT header");
        return -EINVAL;
    }
    uint64_t lba = le64(hdr + 72);
    uint32_t count = le32(hdr + 80), esize = le32(hdr + 84);
    if (esize < 128 || esize > 4096 || esize % 8) {
        error_setg(errp, "GPT entry size %u is invalid", esize);
        return -EINVAL;
    }
    if ((uint32_t)num > count) {
        error_setg(errp, "partition %d not found (the GPT has %u entries)", num,
                   count);
        return -ENOENT;
    }
    uint8_t e[128];
    /* lba * SECTOR must not wrap round to a small offset inside the disk */
    uint64_t pos = lba * SECTOR + (uint64_t)(num - 1) * esize;
    if (lba == 0 || lba > disk / SECTOR || pos + sizeof(e) > disk) {
        error_setg(errp, "GPT entries lie outside the disk");
        return -EINVAL;
    }
    rc = blk_pread(blk, pos, e, sizeof(e));
    if (rc < 0) {
        error_setg_errno(errp, -rc, "cannot read GPT entry %d", num);
        return rc;
    }
    static const uint8_t unused[16];
    uint64_t first = le64(e + 32), last = le64(e + 40);
    if (memcmp(e, unused, 16) == 0) {
        error_setg(errp, "partition %d not found", num);
        return -ENOENT;
    }
    if (last < first || last >= disk / SECTOR) {
        error_setg(errp, "partition %d lies outside the disk", num);
        return -EINVAL;
    }
    *offset = first * SECTOR;
    *size = (last - first + 1) * SECTOR;
    return 0;
}

int nbd_find_partition(struct blk_backend *blk, int num, uint64_t *offset,
                       uint64_t *size, struct error **errp)
{
    int64_t disk = blk_getlength(blk);
    uint8_t mbr[SECTOR];
    if (num < 1) {
        error_setg(errp, "partition number must be 1 or more");
        return -EINVAL;
    }
    if (disk < (int64_t)SECTOR) {
        error_setg(errp, "the image is too small for a partition table");
        return -EINVAL;
    }
    int rc = blk_pread(blk, 0, mbr, SECTOR);
    if (rc < 0) {
        error_setg_errno(errp, -rc, "cannot read the partition table");
        return rc;
    }
    if (mbr[510] != 0x55 || mbr[511] != 0xaa) {
        error_setg(errp, "no MBR partition table (missing 0x55AA signature)");
        return -EINVAL;
    }
    for (int i = 0; i < 4; i++) {
        if (mbr[446 + 16 * i + 4] == 0xee) {
            return gpt_find(blk, num, disk, offset, size, errp);
        }
    }
    uint64_t start = 0, count = 0;
    if (num <= 4) {
        const uint8_t *e = mbr + 446 + 16 * (num - 1);
        if (e[4] == 0 || is_extended(e[4])) {
            error_setg(errp, "partition %d not found", num);
            return -ENOENT;
        }
        start = le32(e + 8);
        count = le32(e + 12);
    } else {
        /* logical partitions: walk the chain of extended boot records */
        uint64_t ext = 0;
        for (int i = 0; i < 4 && !ext; i++) {
            if (is_extended(mbr[446 + 16 * i + 4])) {
                ext = le32(mbr + 446 + 16 * i + 8);
            }
        }
        if (!ext) {
            error_setg(errp, "partition %d not found (no extended partition)", num);
            return -ENOENT;
        }
        uint64_t ebr = ext;
        int n = 5;
        for (int guard = 0; ; guard++) {
            uint8_t b[SECTOR];
            if (guard > 128 || (ebr + 1) * SECTOR > (uint64_t)disk) {
                error_setg(errp, "partition %d not found", num);
                return -ENOENT;
            }
            rc = blk_pread(blk, ebr * SECTOR, b, SECTOR);
            if (rc < 0) {
                error_setg_errno(errp, -rc, "cannot read an extended boot record");
                return rc;
            }
            if (b[510] != 0x55 || b[511] != 0xaa) {
                error_setg(errp, "partition %d not found", num);
                return -ENOENT;
            }
            if (n == num) {
                start = ebr + le32(b + 446 + 8);
                count = le32(b + 446 + 12);
                break;
            }
            uint32_t next = le32(b + 446 + 16 + 8);
            if (next == 0) {
                error_setg(errp, "partition %d not found", num);
                return -ENOENT;
            }
            ebr = ext + next;
            n++;
        }
    }
    if (count == 0 || (start + count) * SECTOR > (uint64_t)disk) {
        error_setg(errp, "partition %d lies outside the disk", num);
        return -EINVAL;
    }
    *offset = start * SECTOR;
    *size = count * SECTOR;
    return 0;
}

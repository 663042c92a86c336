/*
 * util/fullio.c — read/write helpers that loop over short transfers and
 * EINTR, and small iovec utilities. Reads are short only at end of file.
 */
#include "util/util.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

/*
 * A non-blocking fd that stops with EAGAIN part-way through a transfer:
 * wait until it can go on, so that the caller's message is never split
 * (returning the short count would read as end of file, or make a writer
 * send the head twice). Returns 0, or -1 with errno set.
 */
static int wait_fd(int fd, short events)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    for (;;) {
        int r = poll(&pfd, 1, -1);
        if (r > 0) {
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
    }
}

ssize_t full_pread(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += n;
    }
    return done;
}

ssize_t full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        done += n;
    }
    return done;
}

ssize_t full_read(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN && done > 0 && wait_fd(fd, POLLIN) == 0) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += n;
    }
    return done;
}

ssize_t full_write(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN && done > 0 && wait_fd(fd, POLLOUT) == 0) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        done += n;
    }
    return done;
}

/*
 * Vectored forms: after a short transfer, continue with the remainder of
 * the vector. The caller's array is not modified; a small copy on the
 * stack tracks progress (IOV_MAX bounds iovcnt).
 */
static ssize_t full_pvec(int fd, const struct iovec *iov, int iovcnt, off_t off,
                         bool write)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX) {
        return -EINVAL;
    }
    struct iovec local[iovcnt > 0 ? iovcnt : 1];
    memcpy(local, iov, sizeof(*iov) * iovcnt);
    struct iovec *cur = local;
    int left = iovcnt;
    size_t done = 0;
    while (left > 0) {
        if (cur->iov_len == 0) {
            cur++;
            left--;
            continue;
        }
        ssize_t n = write ? pwritev(fd, cur, left, off + done)
                          : preadv(fd, cur, left, off + done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            if (write) {
                return -EIO;
            }
            break;
        }
        done += n;
        while (left > 0 && (size_t)n >= cur->iov_len) {
            n -= cur->iov_len;
            cur++;
            left--;
        }
        if (left > 0 && n > 0) {
            cur->iov_base = (char *)cur->iov_base + n;
            cur->iov_len -= n;
        }
    }
    return done;
}

ssize_t full_preadv(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    return full_pvec(fd, iov, iovcnt, off, false);
}

ssize_t full_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    return full_pvec(fd, iov, iovcnt, off, true);
}

size_t iov_size(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++) {
        n += iov[i].iov_len;
    }
    return n;
}

/* Walk the iovec from `offset`, calling fn on each piece up to len bytes. */
#define IOV_WALK(iov, iovcnt, offset, len, STMT)                              \
    do {                                                                      \
        size_t done_ = 0, skip_ = (offset);                                   \
        for (int i_ = 0; i_ < (iovcnt) && done_ < (len); i_++) {              \
            if (skip_ >= (iov)[i_].iov_len) {                                 \
                skip_ -= (iov)[i_].iov_len;                                   \
                continue;                                                     \
            }                                                                 \
            char *p_ = (char *)(iov)[i_].iov_base + skip_;                    \
            size_t n_ = MIN((iov)[i_].iov_len - skip_, (len) - done_);        \
            STMT;                                                             \
            done_ += n_;                                                      \
            skip_ = 0;                                                        \
        }                                                                     \
        return_value = done_;                                                 \
    } while (0)

size_t iov_to_buf(const struct iovec *iov, int iovcnt, size_t offset,
                  void *buf, size_t len)
{
    size_t return_value;
    IOV_WALK(iov, iovcnt, offset, len, memcpy((char *)buf + done_, p_, n_));
    return return_value;
}

size_t iov_from_buf(const struct iovec *iov, int iovcnt, size_t offset,
                    const void *buf, size_t len)
{
    size_t return_value;
    IOV_WALK(iov, iovcnt, offset, len, memcpy(p_, (const char *)buf + done_, n_));
    return return_value;
}

void iov_memset(const struct iovec *iov, int iovcnt, size_t offset, int c,
                size_t len)
{
    size_t return_value;
    IOV_WALK(iov, iovcnt, offset, len, memset(p_, c, n_));
    (void)return_value;
}

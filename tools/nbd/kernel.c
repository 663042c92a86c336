/*
 * tools/nbd/kernel.c — -c/-d: hand an export to the kernel's NBD client
 * through /dev/nbdN. The kernel speaks only the transmission phase, so one
 * end of a socketpair goes to the device (NBD_SET_SOCK) and the other is
 * served as a client that skipped the handshake; a thread sits in
 * NBD_DO_IT until the device is disconnected.
 */
#include "tools/nbd/server.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* The kernel's NBD device ioctls (linux/nbd.h, whose command enum clashes
 * with the wire constants in nbd-proto.h). */
#define NBDDEV_SET_SOCK         _IO(0xab, 0)
#define NBDDEV_SET_BLKSIZE      _IO(0xab, 1)
#define NBDDEV_DO_IT            _IO(0xab, 3)
#define NBDDEV_CLEAR_SOCK       _IO(0xab, 4)
#define NBDDEV_CLEAR_QUE        _IO(0xab, 5)
#define NBDDEV_SET_SIZE_BLOCKS  _IO(0xab, 7)
#define NBDDEV_DISCONNECT       _IO(0xab, 8)
#define NBDDEV_SET_FLAGS        _IO(0xab, 10)

int nbd_kernel_open(const char *dev, struct error **errp)
{
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        error_setg_errno(errp, e, "Failed to open %s", dev);
        return -e;
    }
    return fd;
}

struct kernel_client {
    int dev_fd;
    int sock;
};

static void *kernel_do_it(void *opaque)
{
    struct kernel_client *k = opaque;
    /* Returns when the device is disconnected (-d) or the socket dies. */
    if (ioctl(k->dev_fd, NBDDEV_DO_IT) < 0 && errno != EPIPE) {
        log_warn("NBD_DO_IT: %s", strerror(errno));
    }
    ioctl(k->dev_fd, NBDDEV_CLEAR_QUE);
    ioctl(k->dev_fd, NBDDEV_CLEAR_SOCK);
    close(k->sock);         /* the server side sees EOF and finishes */
    close(k->dev_fd);
    free(k);
    return NULL;
}

int nbd_kernel_attach(int dev_fd, const char *dev, uint64_t size,
                      uint16_t tflags, int *server_fd, struct error **errp)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        error_setg_errno(errp, errno, "socketpair");
        close(dev_fd);
        return -errno;
    }
    if (ioctl(dev_fd, NBDDEV_SET_BLKSIZE, 512UL) < 0 ||
        ioctl(dev_fd, NBDDEV_SET_SIZE_BLOCKS, (unsigned long)(size / 512)) < 0 ||
        ioctl(dev_fd, NBDDEV_SET_FLAGS, (unsigned long)tflags) < 0 ||
        ioctl(dev_fd, NBDDEV_CLEAR_SOCK) < 0 ||
        ioctl(dev_fd, NBDDEV_SET_SOCK, (unsigned long)sp[0]) < 0) {
        int e = errno;
        error_setg_errno(errp, e, "Failed to set up NBD device %s", dev);
        close(sp[0]);
        close(sp[1]);
        close(dev_fd);
        return -e;
    }
    struct kernel_client *k = malloc(sizeof(*k));
    if (!k) {
        abort();
    }
    k->dev_fd = dev_fd;
    k->sock = sp[0];
    pthread_t t;
    int rc = pthread_create(&t, NULL, kernel_do_it, k);
    if (rc != 0) {
        error_setg_errno(errp, rc, "cannot start the NBD device thread");
        ioctl(dev_fd, NBDDEV_CLEAR_SOCK);
        close(sp[0]);
        close(sp[1]);
        close(dev_fd);
        free(k);
        return -rc;
    }
    pthread_detach(t);
    *server_fd = sp[1];
    return 0;
}

int nbd_kernel_disconnect(const char *dev, struct error **errp)
{
    int fd = nbd_kernel_open(dev, errp);
    if (fd < 0) {
        return fd;
    }
    if (ioctl(fd, NBDDEV_DISCONNECT) < 0 || ioctl(fd, NBDDEV_CLEAR_SOCK) < 0) {
        int e = errno;
        error_setg_errno(errp, e, "Failed to disconnect %s", dev);
        close(fd);
        return -e;
    }
    close(fd);
    return 0;
}

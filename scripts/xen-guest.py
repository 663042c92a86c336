#!/usr/bin/env python3
"""A scripted guest for diskdm's Xen mode, used by `make demo` and the
tests/interop/xen-*.sh tests.

It listens on a Unix socket that `diskdm -qtest unix:SOCK` connects to, and
runs a script from stdin, one command per line:

  sh CMD...              run a shell command; stop if it fails
  sh! CMD...             run a shell command that must fail
  connect                accept diskdm's qtest connection (waits up to 30 s)
  ide-write DEV LBA BYTE PIO WRITE SECTORS of one sector filled with BYTE
  ide-read DEV LBA       PIO READ SECTORS; prints the first 8 bytes
  ide-present DEV        IDENTIFY (or IDENTIFY PACKET): is a drive there?
  ide-write-mid DEV LBA COUNT BYTE K CMD...
                         WRITE SECTORS of COUNT sectors; after K of them have
                         completed, run the shell command CMD, then go on
  ide-dma-write DEV LBA COUNT BYTE CMD...
                         WRITE DMA of COUNT sectors; CMD runs while the
                         transfer is in flight (after the start, before the
                         guest looks at the result)
  image-check FILE LBA COUNT BYTE
                         which of those sectors of FILE hold BYTE
  fd-mode DOMID FILE     how that domain's diskdm holds FILE open
  wait-closed DOMID FILE wait (30 s at most) until that diskdm closed FILE
  wait-key PATH VALUE    wait (30 s at most) until xenstore PATH holds VALUE
                         (the rest of the line, without surrounding quotes)
  atapi-tur DEV          TEST UNIT READY, then REQUEST SENSE
  atapi-read DEV LBA     READ(10) of one 2048-byte block
  atapi-write DEV LBA    WRITE(10) of one block (a CD refuses it)
  atapi-eject DEV        START STOP UNIT with LoEj (the guest ejects)
  virtio-ro SLOT         does the virtio-blk at PCI 00:SLOT.0 offer
                         VIRTIO_BLK_F_RO (legacy host features)?
  virtio-write SLOT SECTOR BYTE
                         one 512-byte OUT request through the legacy queue
  echo TEXT              print TEXT
  # ...                  comment

DEV is hda, hdb (primary master/slave), hdc, hdd (secondary). Each command
prints one line of plain words; tests compare those lines.
"""
import os
import socket
import subprocess
import sys
import time

ERR, DRQ, BSY = 0x01, 0x08, 0x80

# How long a command may keep the drive busy before the guest gives up.
BUSY_SECS = float(os.environ.get("XEN_GUEST_BUSY_SECS", "30"))
CHANNELS = {"hda": (0x1f0, 0x3f6, 0), "hdb": (0x1f0, 0x3f6, 1),
            "hdc": (0x170, 0x376, 0), "hdd": (0x170, 0x376, 1)}
ERRBITS = [(0x04, "ABRT"), (0x10, "IDNF"), (0x40, "UNC"), (0x80, "ICRC"),
           (0x02, "EOM"), (0x01, "AMNF")]
SENSE = {0: "NO SENSE", 2: "NOT READY", 3: "MEDIUM ERROR", 5: "ILLEGAL REQUEST",
         6: "UNIT ATTENTION", 7: "DATA PROTECT"}


class Guest:
    def __init__(self, path):
        self.path = path
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(1)
        self.conn = None
        self.buf = b""

    def accept(self):
        self.lsock.settimeout(30)
        self.conn, _ = self.lsock.accept()
        self.conn.settimeout(30)

    def _line(self):
        while b"\n" not in self.buf:
            data = self.conn.recv(65536)
            if not data:
                raise EOFError("diskdm closed the qtest connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, text):
        self.conn.sendall(text.encode() + b"\n")
        while True:
            line = self._line()
            if line.startswith("IRQ"):
                continue
            if not line.startswith("OK"):
                raise RuntimeError("%s -> %s" % (text, line))
            return line[3:]

    def inb(self, port):
        return int(self.cmd("inb 0x%x" % port), 16)

    def outb(self, port, val):
        self.cmd("outb 0x%x 0x%x" % (port, val))

    def inw(self, port):
        return int(self.cmd("inw 0x%x" % port), 16)

    def outw(self, port, val):
        self.cmd("outw 0x%x 0x%x" % (port, val))

    # --- ATA -----------------------------------------------------------
    def wait(self, base, ctl):
        # By the clock, not a poll count: a request may take a while on a
        # loaded machine or behind a slow NBD server with its own timeout.
        deadline = time.monotonic() + BUSY_SECS
        while time.monotonic() < deadline:
            st = self.inb(ctl)
            if not st & BSY:
                return self.inb(base + 7)
        raise RuntimeError("drive stays busy")

    def select(self, dev, lba=0):
        base, ctl, unit = CHANNELS[dev]
        self.outb(ctl, 0x02)                    # nIEN: we poll
        self.outb(base + 6, 0xe0 | unit << 4 | (lba >> 24 & 0xf))
        return base, ctl

    def ata(self, dev, lba, command):
        base, ctl = self.select(dev, lba)
        self.outb(base + 2, 1)
        self.outb(base + 3, lba & 0xff)
        self.outb(base + 4, lba >> 8 & 0xff)
        self.outb(base + 5, lba >> 16 & 0xff)
        self.outb(base + 7, command)
        return base, ctl, self.wait(base, ctl)

    @staticmethod
    def describe(st, err):
        names = [n for bit, n in ERRBITS if err & bit]
        return "status 0x%02x, error %s" % (st, "|".join(names) or "0x%02x" % err)

    def ide_write(self, dev, lba, byte):
        base, ctl, st = self.ata(dev, lba, 0x30)
        if st & DRQ:
            word = byte | byte << 8
            for _ in range(256):
                self.outw(base, word)
            st = self.wait(base, ctl)
        if st & ERR:
            return "write to %s: rejected by the disk (%s)" % (
                dev, self.describe(st, self.inb(base + 1)))
        if st == 0 or st == 0xff:
            return "write to %s: no drive answers" % dev
        return "write to %s: OK" % dev

    def ide_write_mid(self, dev, lba, count, byte, k, cmd):
        base, ctl = self.select(dev, lba)
        self.outb(base + 2, count)
        self.outb(base + 3, lba & 0xff)
        self.outb(base + 4, lba >> 8 & 0xff)
        self.outb(base + 5, lba >> 16 & 0xff)
        self.outb(base + 7, 0x30)
        st = self.wait(base, ctl)
        done = 0
        ran = False
        word = byte | byte << 8
        while st & DRQ and not st & ERR:
            if done == k:
                subprocess.run(cmd, shell=True, check=True)
                ran = True
            for _ in range(256):
                self.outw(base, word)
            st = self.wait(base, ctl)
            if not st & ERR:
                done += 1
        if not ran:                             # refused before any data
            subprocess.run(cmd, shell=True, check=True)
        what = "write of %d sectors to %s: " % (count, dev)
        if st & ERR:
            return what + "%d done, then rejected (%s)" % (
                done, self.describe(st, self.inb(base + 1)))
        return what + "all %d done" % done

    def ide_dma_write(self, dev, lba, count, byte, cmd):
        base, ctl, unit = CHANNELS[dev]
        bm = 0xc000 + (8 if base == 0x170 else 0)
        # PIIX3 IDE function 00:01.1: BAR4 at 0xc000, I/O and bus mastering
        self.cmd("outl 0xcf8 0x80000920")
        self.cmd("outl 0xcfc 0xc001")
        self.cmd("outl 0xcf8 0x80000904")
        self.cmd("outw 0xcfc 0x0005")
        nbytes = count * 512
        self.cmd("writel 0x1000 0x00030000")
        self.cmd("writel 0x1004 0x%08x" % (0x80000000 | nbytes))
        self.cmd("memset 0x30000 %d 0x%02x" % (nbytes, byte))
        self.outb(bm, 0x00)                     # memory -> device
        self.outb(bm + 2, 0x06)
        self.cmd("outl 0x%x 0x1000" % (bm + 4))
        base, ctl = self.select(dev, lba)
        self.outb(base + 2, count)
        self.outb(base + 3, lba & 0xff)
        self.outb(base + 4, lba >> 8 & 0xff)
        self.outb(base + 5, lba >> 16 & 0xff)
        self.outb(base + 7, 0xca)
        self.outb(bm, 0x01)
        subprocess.run(cmd, shell=True, check=True)
        st = self.wait(base, ctl)
        deadline = time.monotonic() + BUSY_SECS
        while time.monotonic() < deadline:
            if not self.inb(bm + 2) & 1:
                break
        self.outb(bm, 0x00)
        what = "DMA write of %d sectors to %s, mode changed in flight: " % (count, dev)
        if st & ERR:
            return what + "rejected (%s)" % self.describe(st, self.inb(base + 1))
        return what + "OK"

    def ide_read(self, dev, lba):
        base, ctl, st = self.ata(dev, lba, 0x20)
        if st & ERR or not st & DRQ:
            return "read from %s: failed (%s)" % (
                dev, self.describe(st, self.inb(base + 1)))
        data = bytearray()
        for _ in range(256):
            w = self.inw(base)
            data += bytes([w & 0xff, w >> 8])
        self.wait(base, ctl)
        return "read from %s: OK, data %s" % (dev, data[:8].hex(" "))

    def ide_present(self, dev):
        base, ctl = self.select(dev)
        if self.inb(base + 7) in (0x00, 0xff, 0x7f):
            return "%s: no drive" % dev
        self.outb(base + 7, 0xec)
        st = self.wait(base, ctl)
        if st & ERR:                            # an ATAPI device aborts 0xec
            self.outb(base + 7, 0xa1)
            st = self.wait(base, ctl)
            kind = "CD-ROM"
        else:
            kind = "hard disk"
        if not st & DRQ:
            return "%s: no drive" % dev
        for _ in range(256):
            self.inw(base)
        self.wait(base, ctl)
        return "%s: %s present" % (dev, kind)

    # --- ATAPI ---------------------------------------------------------
    def packet(self, dev, cdb, out=None, alloc=2048):
        base, ctl = self.select(dev)
        self.outb(base + 1, 0)                  # PIO
        self.outb(base + 4, alloc & 0xff)
        self.outb(base + 5, alloc >> 8)
        self.outb(base + 7, 0xa0)
        st = self.wait(base, ctl)
        if not st & DRQ:
            return st, self.inb(base + 1), b""
        cdb = bytes(cdb) + bytes(12 - len(cdb))
        for i in range(0, 12, 2):
            self.outw(base, cdb[i] | cdb[i + 1] << 8)
        st = self.wait(base, ctl)
        data = bytearray()
        while st & DRQ and not st & ERR:
            n = self.inb(base + 4) | self.inb(base + 5) << 8
            if out is not None:
                for i in range(0, n, 2):
                    self.outw(base, out[i] | out[i + 1] << 8)
            else:
                for _ in range((n + 1) // 2):
                    w = self.inw(base)
                    data += bytes([w & 0xff, w >> 8])
            st = self.wait(base, ctl)
        return st, self.inb(base + 1), bytes(data)

    def sense(self, dev):
        _, _, data = self.packet(dev, [0x03, 0, 0, 0, 18, 0], alloc=18)
        if len(data) < 14:
            return "no sense data"
        key, asc, ascq = data[2] & 0xf, data[12], data[13]
        return "%s, asc 0x%02x/0x%02x" % (SENSE.get(key, "key %d" % key), asc, ascq)

    def atapi_result(self, what, dev, st, err):
        if st & ERR:
            return "%s %s: check condition (%s)" % (what, dev, self.sense(dev))
        return "%s %s: OK" % (what, dev)

    def atapi_tur(self, dev):
        st, err, _ = self.packet(dev, [0x00])
        return self.atapi_result("test unit ready", dev, st, err)

    def atapi_read(self, dev, lba):
        cdb = [0x28, 0, lba >> 24 & 0xff, lba >> 16 & 0xff, lba >> 8 & 0xff,
               lba & 0xff, 0, 0, 1, 0]
        st, err, data = self.packet(dev, cdb)
        r = self.atapi_result("read from", dev, st, err)
        if not st & ERR:
            r += ", data " + data[:8].hex(" ")
        return r

    def atapi_write(self, dev, lba):
        cdb = [0x2a, 0, lba >> 24 & 0xff, lba >> 16 & 0xff, lba >> 8 & 0xff,
               lba & 0xff, 0, 0, 1, 0]
        st, err, _ = self.packet(dev, cdb, out=bytes([0x5a]) * 2048)
        return self.atapi_result("write to", dev, st, err)

    def atapi_eject(self, dev):
        st, err, _ = self.packet(dev, [0x1b, 0, 0, 0, 0x02, 0])
        return self.atapi_result("eject", dev, st, err)


VIRTIO_IO = 0xc100          # where the guest puts each virtio BAR0 (+0x100 per slot)


class Virtio:
    """Just enough of a legacy virtio-pci driver for one request at a time."""

    def __init__(self, g, slot):
        self.g, self.slot = g, slot
        self.io = VIRTIO_IO + 0x100 * (slot - 2)
        self.ring = 0x200000 + 0x10000 * slot
        cfg = 0x80000000 | slot << 11
        g.cmd("outl 0xcf8 0x%x" % cfg)
        self.present = int(g.cmd("inl 0xcfc"), 16) == 0x10011af4
        if not self.present:
            return
        g.cmd("outl 0xcf8 0x%x" % (cfg | 0x10))
        g.cmd("outl 0xcfc 0x%x" % (self.io | 1))
        g.cmd("outl 0xcf8 0x%x" % (cfg | 0x04))
        g.cmd("outw 0xcfc 0x0005")
        self.ready = False

    def features(self):
        return int(self.g.cmd("inl 0x%x" % self.io), 16)

    def setup(self):
        g, io = self.g, self.io
        g.cmd("outb 0x%x 0x00" % (io + 0x12))            # reset
        g.cmd("outb 0x%x 0x03" % (io + 0x12))            # ACKNOWLEDGE | DRIVER
        g.cmd("outl 0x%x 0x%x" % (io + 0x04, self.features() & (1 << 5)))
        g.cmd("outw 0x%x 0x0000" % (io + 0x0e))          # queue 0
        self.qsize = int(g.cmd("inw 0x%x" % (io + 0x0c)), 16)
        g.cmd("memset 0x%x 0x3000 0" % self.ring)
        g.cmd("outl 0x%x 0x%x" % (io + 0x08, self.ring >> 12))
        g.cmd("outb 0x%x 0x07" % (io + 0x12))            # + DRIVER_OK
        self.avail_idx = 0
        self.ready = True

    def request(self, rtype, sector, data):
        g, ring = self.g, self.ring
        if not self.ready:
            self.setup()
        hdr, buf, st = ring + 0x4000, ring + 0x5000, ring + 0x6000
        g.cmd("writel 0x%x 0x%x" % (hdr, rtype))
        g.cmd("writel 0x%x 0x0" % (hdr + 4))
        g.cmd("writeq 0x%x 0x%x" % (hdr + 8, sector))
        g.cmd("memset 0x%x %d 0x%02x" % (buf, len(data), data[0]))
        g.cmd("writeb 0x%x 0xff" % st)
        avail = ring + 16 * self.qsize
        used = (avail + 6 + 2 * self.qsize + 4095) & ~4095
        descs = [(hdr, 16, 1, 1), (buf, len(data), 1, 2), (st, 1, 2, 0)]
        for i, (addr, ln, flags, nxt) in enumerate(descs):
            d = ring + 16 * i
            g.cmd("writeq 0x%x 0x%x" % (d, addr))
            g.cmd("writel 0x%x 0x%x" % (d + 8, ln))
            g.cmd("writew 0x%x 0x%x" % (d + 12, flags))
            g.cmd("writew 0x%x 0x%x" % (d + 14, nxt))
        g.cmd("writew 0x%x 0x0" % (avail + 4 + 2 * (self.avail_idx % self.qsize)))
        self.avail_idx += 1
        g.cmd("writew 0x%x 0x%x" % (avail + 2, self.avail_idx))
        g.cmd("outw 0x%x 0x0000" % (self.io + 0x10))
        deadline = time.monotonic() + BUSY_SECS
        while time.monotonic() < deadline:
            if int(g.cmd("readw 0x%x" % (used + 2)), 16) == self.avail_idx:
                break
        g.cmd("inb 0x%x" % (self.io + 0x13))             # ISR: lower INTx
        return int(g.cmd("readb 0x%x" % st), 16)


def image_check(path, lba, count, byte):
    runs = []
    with open(path, "rb") as f:
        for i in range(count):
            f.seek((lba + i) * 512)
            has = f.read(512) == bytes([byte]) * 512
            if runs and runs[-1][0] == has:
                runs[-1][2] = i
            else:
                runs.append([has, i, i])
    parts = []
    for has, a, b in runs:
        span = "sector %d" % (lba + a) if a == b else "sectors %d-%d" % (lba + a, lba + b)
        parts.append("%s %s" % (span, "written" if has else "not written"))
    return "%s: %s" % (os.path.basename(path), ", ".join(parts))


def fd_mode(domid, path):
    pid = subprocess.run(["xenstore-read",
                          "/local/domain/%s/image/device-model-pid" % domid],
                         capture_output=True, text=True, check=True).stdout.strip()
    modes = []
    real = os.path.realpath(path)
    try:
        fds = sorted(os.listdir("/proc/%s/fd" % pid), key=int)
    except OSError:                             # gone, or a zombie
        fds = []
    for fd in fds:
        try:
            if os.readlink("/proc/%s/fd/%s" % (pid, fd)) != real:
                continue
            with open("/proc/%s/fdinfo/%s" % (pid, fd)) as f:
                for line in f:
                    if line.startswith("flags:"):
                        acc = int(line.split()[1], 8) & 3
                        modes.append("read-only" if acc == 0 else "read-write")
        except OSError:
            continue
    name = os.path.basename(path)
    if not modes:
        return "%s: not open" % name
    # a read-write image may also have read-only descriptors (locks, probing)
    return "%s: open %s" % (name, "read-write" if "read-write" in modes else "read-only")


def wait_key(path, value):
    for _ in range(600):
        r = subprocess.run(["xenstore-read", path], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.rstrip("\n") == value:
            return True
        time.sleep(0.05)
    return False


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "--sock":
        sys.stderr.write("usage: xen-guest.py --sock PATH < SCRIPT\n")
        return 2
    g = Guest(sys.argv[2])
    vdevs = {}
    try:
        for raw in sys.stdin:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            args = rest.split()
            if word in ("sh", "sh!"):
                r = subprocess.run(rest, shell=True)
                if (r.returncode == 0) != (word == "sh"):
                    print("command %s: %s (exit %d)" % (
                        "failed" if word == "sh" else "succeeded unexpectedly",
                        rest, r.returncode), flush=True)
                    return 1
                continue
            if word == "echo":
                out = rest
            elif word == "connect":
                g.accept()
                continue
            elif word == "ide-write":
                out = g.ide_write(args[0], int(args[1], 0), int(args[2], 0))
            elif word == "ide-write-mid":
                a = rest.split(None, 5)
                out = g.ide_write_mid(a[0], int(a[1], 0), int(a[2], 0),
                                      int(a[3], 0), int(a[4], 0), a[5])
            elif word == "ide-dma-write":
                a = rest.split(None, 4)
                out = g.ide_dma_write(a[0], int(a[1], 0), int(a[2], 0),
                                      int(a[3], 0), a[4])
            elif word == "virtio-ro":
                v = Virtio(g, int(args[0], 0))
                if not v.present:
                    out = "virtio slot %s: no device" % args[0]
                else:
                    out = "virtio slot %s: read-only feature %s" % (
                        args[0], "offered" if v.features() & (1 << 5) else "not offered")
            elif word == "virtio-write":
                v = vdevs.setdefault(args[0], None) or Virtio(g, int(args[0], 0))
                vdevs[args[0]] = v
                st = v.request(1, int(args[1], 0), bytes([int(args[2], 0)]) * 512)
                out = "virtio write to slot %s: %s" % (
                    args[0], {0: "OK", 1: "I/O error", 2: "unsupported"}.get(st, "status %d" % st))
            elif word == "image-check":
                out = image_check(args[0], int(args[1], 0), int(args[2], 0),
                                  int(args[3], 0))
            elif word == "wait-key":
                path, _, value = rest.partition(" ")
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                if not wait_key(path, value):
                    print("timed out waiting for %s = %s" % (path, value), flush=True)
                    return 1
                continue
            elif word == "wait-closed":
                for _ in range(600):
                    if fd_mode(args[0], args[1]).endswith("not open"):
                        break
                    time.sleep(0.05)
                else:
                    print("timed out waiting for %s to be closed" % args[1], flush=True)
                    return 1
                continue
            elif word == "fd-mode":
                out = fd_mode(args[0], args[1])
            elif word == "ide-read":
                out = g.ide_read(args[0], int(args[1], 0))
            elif word == "ide-present":
                out = g.ide_present(args[0])
            elif word == "atapi-tur":
                out = g.atapi_tur(args[0])
            elif word == "atapi-read":
                out = g.atapi_read(args[0], int(args[1], 0))
            elif word == "atapi-write":
                out = g.atapi_write(args[0], int(args[1], 0))
            elif word == "atapi-eject":
                out = g.atapi_eject(args[0])
            else:
                sys.stderr.write("xen-guest.py: unknown command %s\n" % word)
                return 2
            print(out, flush=True)
    except (OSError, EOFError, RuntimeError) as e:
        print("guest: %s" % e, flush=True)
        return 1
    finally:
        if g.conn:
            g.conn.close()
        g.lsock.close()
        try:
            os.unlink(g.path)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""fsx.py: a small file system exerciser after fsx (xfstests, LTP).

Runs a random sequence of operations on one file, from a seed, and keeps a
model of what the file must hold ("good" buffer and size). Every read (pread
or through a shared mmap) is compared with the model; at the first difference
it prints READ BAD DATA with the first bad offset, a table of bad bytes and the
tail of the operation log, saves the model as FILE.fsxgood and the log as
FILE.fsxlog, and exits 1. At the end the whole file is read back and compared.

Operations, as fsx's: read, write, mapread, mapwrite (mmap MAP_SHARED + msync),
truncate (ftruncate up and down), fsync, close and reopen (-c), fallocate,
punch hole, zero range, collapse range and insert range (fallocate(2); each
disabled, as fsx does, when the file system answers EOPNOTSUPP), and with
--copy-range copy_file_range(2) within the file (never between overlapping
ranges, which the syscall refuses) and from a second file (FILE.fsxsrc).

Data written at step N is N mod 256 at even offsets and a random byte plus N
at odd ones (fsx's pattern): a byte from a misdirected write tells its step.
"""
import argparse
import ctypes
import errno
import mmap
import os
import random
import sys
import time

PAGE = mmap.PAGESIZE
LOG_SIZE = 1024

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.ENOTTY)

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.fallocate.restype = ctypes.c_int


def fallocate(fd, mode, offset, length):
    if libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Failure(Exception):
    pass


class Fsx:
    def __init__(self, args):
        self.args = args
        self.fname = args.file
        self.rng = random.Random(args.seed)
        self.max_len = args.maxfilelen
        self.good = bytearray(self.max_len)
        self.size = 0
        self.step = 0
        self.log = []
        self.counts = {}
        self.fd = -1
        self.src = None  # (fd, model bytes) of the copy source
        self.falloc = {} if args.no_fallocate else {
            'fallocate': True, 'punch_hole': True, 'zero_range': True, 'collapse_range': True, 'insert_range': True}
        self.block = 4096

    # -- logging and failure --------------------------------------------------

    def note(self, text):
        entry = '%d(%d mod 256): %s' % (self.step, self.step % 256, text)
        self.log.append(entry)
        if len(self.log) > LOG_SIZE:
            del self.log[0]
        if self.args.debug:
            print(entry)

    def fail(self, headline, details=()):
        out = sys.stdout
        out.write('%s\n' % headline)
        for line in details:
            out.write('%s\n' % line)
        out.write('LOG DUMP (%d total operations, last %d):\n' % (self.step, len(self.log)))
        for entry in self.log[-self.args.log_tail:]:
            out.write('%s\n' % entry)
        try:
            with open(self.fname + '.fsxgood', 'wb') as f:
                f.write(self.good[:self.size])
            with open(self.fname + '.fsxlog', 'w') as f:
                f.write('\n'.join(self.log) + '\n')
            out.write('Correct content saved for comparison in %s.fsxgood (log: %s.fsxlog)\n' % (self.fname, self.fname))
        except OSError as e:
            out.write('could not save the model: %s\n' % e)
        out.write('seed %d\n' % self.args.seed)
        out.flush()
        raise Failure(headline)

    def check(self, got, offset, what):
        want = bytes(self.good[offset:offset + len(got)])
        if got == want:
            return
        first = next(i for i in range(len(got)) if got[i] != want[i])
        details = ['first bad offset 0x%x (%d)' % (offset + first, offset + first), 'OFFSET\tGOOD\tBAD\tRANGE']
        shown = 0
        i = first
        while i < len(got) and shown < 16:
            if got[i] != want[i]:
                j = i
                while j < len(got) and got[j] != want[j]:
                    j += 1
                details.append('0x%05x\t0x%02x\t0x%02x\t0x%x' % (offset + i, want[i], got[i], j - i))
                shown += 1
                i = j
            else:
                i += 1
        bad = got[first]
        step = bad if (offset + first) % 2 == 0 else None
        if step is not None:
            details.append('Step# (mod 256) for a misdirected write may be %d' % step)
        self.fail('%s BAD DATA: offset = 0x%x, size = 0x%x, fname = %s' % (what, offset, len(got), self.fname), details)

    # -- the file ---------------------------------------------------------------

    def open(self):
        self.fd = os.open(self.fname, os.O_RDWR)

    def close(self):
        os.close(self.fd)
        self.fd = -1

    def check_size(self, when):
        actual = os.fstat(self.fd).st_size
        if actual != self.size:
            self.fail('Size error: expected 0x%x but found 0x%x (%s)' % (self.size, actual, when))

    def gendata(self, offset, size):
        """fsx's data: step at even offsets, random + step at odd ones."""
        step = self.step % 256
        data = bytearray(self.rng.randbytes(size)).translate(bytes((i + step) % 256 for i in range(256)))
        first_even = offset % 2
        data[first_even::2] = bytes([step]) * len(range(first_even, size, 2))
        return bytes(data)

    def pread_all(self, fd, size, offset):
        parts = []
        done = 0
        while done < size:
            chunk = os.pread(fd, size - done, offset + done)
            if not chunk:
                break
            parts.append(chunk)
            done += len(chunk)
        return b''.join(parts)

    def pwrite_all(self, data, offset):
        done = 0
        while done < len(data):
            n = os.pwrite(self.fd, data[done:], offset + done)
            if n <= 0:
                self.fail('short write: 0x%x bytes of 0x%x at 0x%x' % (done, len(data), offset))
            done += n

    def grow_model(self, end):
        # the model beyond size is always zeros
        if end > self.size:
            self.size = end

    # -- operations ---------------------------------------------------------------

    def op_read(self, mapped):
        if self.size == 0:
            self.note('skipping zero size read')
            return
        offset = self.rng.randrange(self.size)
        offset -= offset % self.args.readbdy
        size = self.oplen()
        size = min(size, self.size - offset)
        if mapped:
            self.note('MAPREAD  0x%x thru 0x%x\t(0x%x bytes)' % (offset, offset + size - 1, size))
            pg = offset - offset % PAGE
            m = mmap.mmap(self.fd, offset - pg + size, mmap.MAP_SHARED, mmap.PROT_READ, offset=pg)
            try:
                got = m[offset - pg:offset - pg + size]
            finally:
                m.close()
        else:
            self.note('READ     0x%x thru 0x%x\t(0x%x bytes)' % (offset, offset + size - 1, size))
            got = self.pread_all(self.fd, size, offset)
            if len(got) != size:
                self.fail('short read: 0x%x bytes of 0x%x at 0x%x' % (len(got), size, offset))
        self.check(got, offset, 'MAPREAD' if mapped else 'READ')

    def op_write(self, mapped):
        offset = self.rng.randrange(self.max_len)
        offset -= offset % self.args.writebdy
        size = min(self.oplen(), self.max_len - offset)
        if size == 0:
            self.note('skipping zero size write')
            return
        data = self.gendata(offset, size)
        end = offset + size
        how = ' (extending)' if end > self.size else ''
        self.note('%s 0x%x thru 0x%x\t(0x%x bytes)%s' % ('MAPWRITE' if mapped else 'WRITE   ', offset, end - 1, size, how))
        if mapped:
            if end > self.size:
                os.ftruncate(self.fd, end)
            pg = offset - offset % PAGE
            m = mmap.mmap(self.fd, end - pg, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=pg)
            try:
                m[offset - pg:end - pg] = data
                m.flush()  # msync(MS_SYNC)
            finally:
                m.close()
        else:
            self.pwrite_all(data, offset)
        self.good[offset:end] = data
        self.grow_model(end)

    def op_truncate(self):
        new = self.rng.randrange(self.max_len + 1)
        new -= new % self.args.truncbdy
        self.note('TRUNCATE %s\tfrom 0x%x to 0x%x' % ('UP  ' if new > self.size else 'DOWN', self.size, new))
        os.ftruncate(self.fd, new)
        if new < self.size:
            self.good[new:self.size] = bytes(self.size - new)
        self.size = new

    def op_fsync(self):
        self.note('FSYNC')
        os.fsync(self.fd)

    def falloc_call(self, name, mode, offset, length):
        try:
            fallocate(self.fd, mode, offset, length)
        except OSError as e:
            if e.errno in UNSUPPORTED:
                # fsx probes at the start; a file system may still refuse a mode later
                self.fail('%s: fallocate mode 0x%x refused (%s) after the probe accepted it' % (name, mode, os.strerror(e.errno)))
            raise

    def op_fallocate(self):
        offset = self.rng.randrange(self.max_len)
        length = min(self.oplen(), self.max_len - offset)
        if length == 0:
            return
        keep = self.rng.random() < 0.5
        end = offset + length
        self.note('FALLOC   0x%x thru 0x%x\t(0x%x bytes)%s' % (offset, end - 1, length, ' keep_size' if keep else ''))
        self.falloc_call('fallocate', FALLOC_FL_KEEP_SIZE if keep else 0, offset, length)
        if not keep:
            self.grow_model(end)

    def op_punch_hole(self):
        if self.size == 0:
            return
        offset = self.rng.randrange(self.size)
        length = min(self.oplen(), self.size - offset)
        self.note('PUNCH    0x%x thru 0x%x\t(0x%x bytes)' % (offset, offset + length - 1, length))
        self.falloc_call('punch hole', FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
        self.good[offset:offset + length] = bytes(length)

    def op_zero_range(self):
        offset = self.rng.randrange(self.max_len)
        length = min(self.oplen(), self.max_len - offset)
        if length == 0:
            return
        keep = self.rng.random() < 0.5
        end = offset + length
        self.note('ZERO     0x%x thru 0x%x\t(0x%x bytes)%s' % (offset, end - 1, length, ' keep_size' if keep else ''))
        self.falloc_call('zero range', FALLOC_FL_ZERO_RANGE | (FALLOC_FL_KEEP_SIZE if keep else 0), offset, length)
        lim = end if not keep else min(end, self.size)
        if lim > offset:
            self.good[offset:lim] = bytes(lim - offset)
        if not keep:
            self.grow_model(end)

    def op_collapse_range(self):
        if self.size <= self.block:
            return
        offset = self.rng.randrange(self.size)
        offset -= offset % self.block
        length = min(self.oplen(), self.size - offset - 1)
        length -= length % self.block
        if length <= 0 or offset + length >= self.size:
            return
        self.note('COLLAPSE 0x%x thru 0x%x\t(0x%x bytes)' % (offset, offset + length - 1, length))
        self.falloc_call('collapse range', FALLOC_FL_COLLAPSE_RANGE, offset, length)
        tail = bytes(self.good[offset + length:self.size])
        self.good[offset:offset + len(tail)] = tail
        self.good[self.size - length:self.size] = bytes(length)
        self.size -= length

    def op_insert_range(self):
        if self.size == 0:
            return
        offset = self.rng.randrange(self.size)
        offset -= offset % self.block
        length = min(self.oplen(), self.max_len - self.size)
        length -= length % self.block
        if length <= 0 or offset >= self.size:
            return
        self.note('INSERT   0x%x thru 0x%x\t(0x%x bytes)' % (offset, offset + length - 1, length))
        self.falloc_call('insert range', FALLOC_FL_INSERT_RANGE, offset, length)
        tail = bytes(self.good[offset:self.size])
        self.good[offset + length:offset + length + len(tail)] = tail
        self.good[offset:offset + length] = bytes(length)
        self.size += length

    def copy_range(self, src_fd, src_model, src_off, dst_off, size, label):
        self.note('%s 0x%x thru 0x%x\t(0x%x bytes) to 0x%x thru 0x%x' % (
            label, src_off, src_off + size - 1, size, dst_off, dst_off + size - 1))
        data = bytes(src_model[src_off:src_off + size])
        done = 0
        while done < size:
            n = os.copy_file_range(src_fd, self.fd, size - done, src_off + done, dst_off + done)
            if n == 0:
                self.fail('short copy_file_range: 0x%x bytes of 0x%x from 0x%x to 0x%x' % (done, size, src_off, dst_off))
            done += n
        self.good[dst_off:dst_off + size] = data
        self.grow_model(dst_off + size)

    def op_copy_range(self):
        """copy_file_range within the file: the ranges may not overlap."""
        if self.size == 0:
            self.note('skipping zero size copy')
            return
        src = self.rng.randrange(self.size)
        size = min(self.oplen(), self.size - src)
        for _ in range(10):
            dst = self.rng.randrange(self.max_len)
            dst -= dst % self.args.writebdy
            n = min(size, self.max_len - dst)
            if n > 0 and (dst + n <= src or src + n <= dst):
                self.copy_range(self.fd, self.good, src, dst, n, 'COPY    ')
                return
        self.note('skipping copy: no destination apart from 0x%x thru 0x%x' % (src, src + size - 1))

    def op_copy_in(self):
        """copy_file_range from the second file."""
        src_fd, src_model = self.src
        src = self.rng.randrange(len(src_model))
        size = min(self.oplen(), len(src_model) - src)
        dst = self.rng.randrange(self.max_len)
        dst -= dst % self.args.writebdy
        size = min(size, self.max_len - dst)
        if size == 0:
            return
        self.copy_range(src_fd, src_model, src, dst, size, 'COPY IN ')

    def oplen(self):
        if self.args.norandomoplen:
            return self.args.maxoplen
        return self.rng.randint(1, self.args.maxoplen)

    # -- the run ------------------------------------------------------------------

    def probe_fallocate(self):
        """As fsx: a mode the file system does not support is disabled."""
        modes = {
            'fallocate': 0, 'punch_hole': FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            'zero_range': FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
            'collapse_range': FALLOC_FL_COLLAPSE_RANGE, 'insert_range': FALLOC_FL_INSERT_RANGE,
        }
        for name in list(self.falloc):
            try:
                fallocate(self.fd, modes[name], 0, self.block)
            except OSError as e:
                if e.errno in UNSUPPORTED:
                    print('fsx: main: filesystem does not support %s, disabling!' % name.replace('_', ' '))
                    del self.falloc[name]
            os.ftruncate(self.fd, 0)

    def run(self):
        args = self.args
        fd = os.open(self.fname, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        os.close(fd)
        self.open()
        self.block = os.fstat(self.fd).st_blksize or 4096
        self.probe_fallocate()
        if args.copy_range:
            src_len = max(1, self.max_len // 2)
            src_model = self.rng.randbytes(src_len)
            src_fd = os.open(self.fname + '.fsxsrc', os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
            os.pwrite(src_fd, src_model, 0)
            self.src = (src_fd, src_model)
        ops = [('read', lambda: self.op_read(False), 1), ('write', lambda: self.op_write(False), 1),
               ('mapread', lambda: self.op_read(not args.no_mapread), 1),
               ('mapwrite', lambda: self.op_write(not args.no_mapwrite), 1),
               ('truncate', self.op_truncate, 1), ('fsync', self.op_fsync, 0.25)]
        falloc_ops = {'fallocate': self.op_fallocate, 'punch_hole': self.op_punch_hole, 'zero_range': self.op_zero_range,
                      'collapse_range': self.op_collapse_range, 'insert_range': self.op_insert_range}
        ops += [(name, falloc_ops[name], 1) for name in self.falloc]
        if args.copy_range:
            ops += [('copy_range', self.op_copy_range, 1), ('copy_in', self.op_copy_in, 0.5)]
        names = [o[0] for o in ops]
        funcs = [o[1] for o in ops]
        weights = [o[2] for o in ops]
        started = time.monotonic()
        for self.step in range(1, args.numops + 1):
            k = self.rng.choices(range(len(ops)), weights)[0]
            self.counts[names[k]] = self.counts.get(names[k], 0) + 1
            try:
                funcs[k]()
            except OSError as e:
                self.fail('%s: unexpected error %s (%s)' % (names[k], errno.errorcode.get(e.errno, e.errno), e.strerror))
            if args.closeprob and self.rng.randrange(args.closeprob) == 0:
                self.note('CLOSE/OPEN')
                self.close()
                self.open()
            self.check_size('after %s' % names[k])
            if args.verify_every and self.step % args.verify_every == 0:
                self.verify_all('verify')
            if args.progress and self.step % args.progress == 0:
                print('%d ops, size 0x%x, %.1f s' % (self.step, self.size, time.monotonic() - started), flush=True)
        self.verify_all('final check')
        self.close()
        if self.src:
            src_fd, src_model = self.src
            got = self.pread_all(src_fd, len(src_model), 0)
            if got != src_model:
                self.fail('copy source %s.fsxsrc changed' % self.fname)
            os.close(src_fd)
        if args.model_out:
            with open(args.model_out, 'wb') as f:
                f.write(self.good[:self.size])
        summary = ', '.join('%s %d' % (name, self.counts.get(name, 0)) for name in names)
        print('All %d operations completed A-OK! (seed %d, size 0x%x, %.1f s; %s)' % (
            args.numops, args.seed, self.size, time.monotonic() - started, summary))

    def verify_all(self, what):
        self.note('%s of the whole file (0x%x bytes)' % (what.upper(), self.size))
        got = self.pread_all(self.fd, self.size + 1, 0)
        if len(got) != self.size:
            self.fail('%s: read 0x%x bytes of a file of 0x%x' % (what, len(got), self.size))
        self.check(got, 0, what.upper())


def size_arg(text):
    units = {'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}
    text = text.strip().lower()
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text, 0)


def main():
    p = argparse.ArgumentParser(description='fsx: a file system exerciser (after fsx of xfstests and LTP)')
    p.add_argument('file')
    p.add_argument('-N', dest='numops', type=int, default=10000, help='number of operations (default 10000)')
    p.add_argument('-S', dest='seed', type=int, default=None, help='random seed (default: from the clock)')
    p.add_argument('-o', dest='maxoplen', type=size_arg, default=65536, help='largest operation (default 64k)')
    p.add_argument('-l', dest='maxfilelen', type=size_arg, default=256 * 1024, help='largest file (default 256k)')
    p.add_argument('-O', dest='norandomoplen', action='store_true', help='every operation of the largest size')
    p.add_argument('-c', dest='closeprob', type=int, default=0, help='close and reopen after 1 in P operations')
    p.add_argument('-r', dest='readbdy', type=int, default=1, help='reads aligned to this')
    p.add_argument('-w', dest='writebdy', type=int, default=1, help='writes aligned to this')
    p.add_argument('-t', dest='truncbdy', type=int, default=1, help='truncations aligned to this')
    p.add_argument('-R', dest='no_mapread', action='store_true', help='no mmap reads')
    p.add_argument('-W', dest='no_mapwrite', action='store_true', help='no mmap writes')
    p.add_argument('--no-mmap', action='store_true', help='no mmap at all (-R -W)')
    p.add_argument('-F', dest='no_fallocate', action='store_true', help='no fallocate, punch hole, zero, collapse, insert')
    p.add_argument('--copy-range', action='store_true', help='copy_file_range within the file and from FILE.fsxsrc')
    p.add_argument('--verify-every', type=int, default=0, help='compare the whole file every N operations')
    p.add_argument('--model-out', help='write the final model (what the file must hold) here')
    p.add_argument('--log-tail', type=int, default=40, help='log entries printed on a failure')
    p.add_argument('-p', dest='progress', type=int, default=0, help='progress every N operations')
    p.add_argument('-d', dest='debug', action='store_true', help='print every operation')
    args = p.parse_args()
    if args.no_mmap:
        args.no_mapread = args.no_mapwrite = True
    if args.seed is None:
        args.seed = int(time.time() * 1000) % 1000000
    if args.maxoplen < 1 or args.maxfilelen < 1:
        p.error('sizes must be positive')
    try:
        Fsx(args).run()
    except Failure:
        sys.exit(1)


if __name__ == '__main__':
    main()

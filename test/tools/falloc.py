#!/usr/bin/env python3
"""fallocate(2) on PATH, opened O_RDWR|O_CREAT as fallocate(1) opens it:
prints ok, or the name of the errno (ENOENT, EISDIR...), as node:fs's codes.
usage: falloc.py PATH MODE OFFSET LENGTH (MODE: the FALLOC_FL_* bits)"""
import ctypes
import errno
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.fallocate.restype = ctypes.c_int

path, mode, offset, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
except OSError as e:
    print(errno.errorcode[e.errno])
    sys.exit(0)
try:
    print('ok' if libc.fallocate(fd, mode, offset, length) == 0 else errno.errorcode[ctypes.get_errno()])
finally:
    os.close(fd)

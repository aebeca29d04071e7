#!/usr/bin/env python3
# A process that takes file locks on behalf of a test: one JSON command a line on
# stdin, one JSON answer a line on stdout ({"ready": ...} first).
#
# Locks are taken through libc (ctypes), not Python's fcntl module, so that an
# interrupted call shows its errno (EINTR) instead of being retried (PEP 475);
# "api": "lockf" uses Python's fcntl.lockf instead. A blocking call given
# "interruptAfter": SECONDS gets a SIGALRM then (the handler does nothing and is
# installed without SA_RESTART): the call must come back with EINTR.
#
# Commands ("op"):
#   open    path, [mode: "rw" | "r" | "w"]                     -> fd
#   close   fd
#   lock    fd, type: "r" | "w" | "u", start, len, [kind: "posix" | "ofd"],
#           [wait], [interruptAfter], [api: "lockf"]          -> ok | errno, ms
#   getlk   fd, type, start, len, [kind]                       -> type, start, len, pid
#   flock   fd, type: "sh" | "ex" | "un", [wait], [interruptAfter] -> ok | errno, ms
#   pread   fd, offset, size                                   -> hex
#   exit    [code]
import ctypes
import errno
import fcntl
import json
import os
import signal
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.fcntl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
libc.fcntl.restype = ctypes.c_int
libc.flock.argtypes = [ctypes.c_int, ctypes.c_int]
libc.flock.restype = ctypes.c_int

F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8
TYPES = {'r': F_RDLCK, 'w': F_WRLCK, 'u': F_UNLCK}
NAMES = {v: k for k, v in TYPES.items()}


class Flock(ctypes.Structure):
    # struct flock of x86_64 and aarch64 Linux (32 bytes)
    _fields_ = [('l_type', ctypes.c_short), ('l_whence', ctypes.c_short),
                ('l_start', ctypes.c_int64), ('l_len', ctypes.c_int64), ('l_pid', ctypes.c_int)]


signal.signal(signal.SIGALRM, lambda signum, frame: None)
signal.siginterrupt(signal.SIGALRM, True)


def answer(value):
    sys.stdout.write(json.dumps(value) + '\n')
    sys.stdout.flush()


def timed(call, interrupt_after=None):
    """Runs call() (returning 0 or -1 with errno); answers ok or the errno name, and ms."""
    if interrupt_after:
        signal.setitimer(signal.ITIMER_REAL, interrupt_after)
    started = time.monotonic()
    try:
        result = call()
        err = ctypes.get_errno() if result != 0 else 0
    except OSError as e:
        err = e.errno
    finally:
        if interrupt_after:
            signal.setitimer(signal.ITIMER_REAL, 0)
    ms = round((time.monotonic() - started) * 1000)
    return {'ok': True, 'ms': ms} if err == 0 else {'errno': errno.errorcode.get(err, str(err)), 'ms': ms}


def lock(cmd):
    fd = cmd['fd']
    kind = cmd.get('kind', 'posix')
    wait = cmd.get('wait', False)
    if cmd.get('api') == 'lockf':
        op = {'r': fcntl.LOCK_SH, 'w': fcntl.LOCK_EX, 'u': fcntl.LOCK_UN}[cmd['type']]
        if not wait and op != fcntl.LOCK_UN:
            op |= fcntl.LOCK_NB

        def call():
            fcntl.lockf(fd, op, cmd['len'], cmd['start'], os.SEEK_SET)
            return 0
        return timed(call, cmd.get('interruptAfter'))
    request = Flock(TYPES[cmd['type']], os.SEEK_SET, cmd['start'], cmd['len'], 0)
    if kind == 'ofd':
        op = F_OFD_SETLKW if wait else F_OFD_SETLK
    else:
        op = F_SETLKW if wait else F_SETLK
    return timed(lambda: libc.fcntl(fd, op, ctypes.addressof(request)), cmd.get('interruptAfter'))


def getlk(cmd):
    request = Flock(TYPES[cmd['type']], os.SEEK_SET, cmd['start'], cmd['len'], 0)
    op = F_OFD_GETLK if cmd.get('kind') == 'ofd' else F_GETLK
    if libc.fcntl(cmd['fd'], op, ctypes.addressof(request)) != 0:
        return {'errno': errno.errorcode.get(ctypes.get_errno(), '?')}
    return {'type': NAMES.get(request.l_type, str(request.l_type)), 'start': request.l_start,
            'len': request.l_len, 'pid': request.l_pid}


def flock(cmd):
    op = {'sh': LOCK_SH, 'ex': LOCK_EX, 'un': LOCK_UN}[cmd['type']]
    if not cmd.get('wait', False):
        op |= LOCK_NB
    return timed(lambda: libc.flock(cmd['fd'], op), cmd.get('interruptAfter'))


def main():
    answer({'ready': True, 'pid': os.getpid()})
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd['op']
        try:
            if op == 'open':
                flags = {'rw': os.O_RDWR, 'r': os.O_RDONLY, 'w': os.O_WRONLY}[cmd.get('mode', 'rw')]
                answer({'fd': os.open(cmd['path'], flags | cmd.get('flags', 0))})
            elif op == 'close':
                os.close(cmd['fd'])
                answer({'ok': True})
            elif op == 'lock':
                answer(lock(cmd))
            elif op == 'getlk':
                answer(getlk(cmd))
            elif op == 'flock':
                answer(flock(cmd))
            elif op == 'pread':
                answer({'hex': os.pread(cmd['fd'], cmd['size'], cmd['offset']).hex()})
            elif op == 'exit':
                answer({'ok': True})
                sys.exit(cmd.get('code', 0))
            else:
                answer({'error': 'unknown op %r' % op})
        except OSError as e:
            answer({'errno': errno.errorcode.get(e.errno, str(e.errno))})


main()

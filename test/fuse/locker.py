# A process that takes file locks for test/fuse/binding.test.ts: one JSON command
# a line on stdin, one JSON answer a line on stdout. Locks go through libc
# (ctypes) so that an interrupted call shows its errno (EINTR) instead of being
# retried the way Python's fcntl module retries it. SIGUSR1 only interrupts.
import ctypes
import json
import os
import signal
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.fcntl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
libc.flock.argtypes = [ctypes.c_int, ctypes.c_int]

F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7


class Flock(ctypes.Structure):
    _fields_ = [('l_type', ctypes.c_short), ('l_whence', ctypes.c_short),
                ('l_start', ctypes.c_int64), ('l_len', ctypes.c_int64), ('l_pid', ctypes.c_int)]


# installed without SA_RESTART: a blocked fcntl returns EINTR
signal.signal(signal.SIGUSR1, lambda signum, frame: None)


def answer(value):
    sys.stdout.write(json.dumps(value) + '\n')
    sys.stdout.flush()


def call(result):
    return {'ok': True} if result == 0 else {'errno': ctypes.get_errno()}


answer({'ready': True, 'pid': os.getpid()})
for line in sys.stdin:
    cmd = json.loads(line)
    if 'open' in cmd:
        answer({'fd': os.open(cmd['open'], os.O_RDWR)})
    elif 'setlk' in cmd:
        kind, start, length = cmd['setlk']
        lock = Flock(kind, os.SEEK_SET, start, length, 0)
        answer(call(libc.fcntl(cmd['fd'], F_SETLKW if cmd.get('wait') else F_SETLK, ctypes.addressof(lock))))
    elif 'getlk' in cmd:
        kind, start, length = cmd['getlk']
        lock = Flock(kind, os.SEEK_SET, start, length, 0)
        result = call(libc.fcntl(cmd['fd'], F_GETLK, ctypes.addressof(lock)))
        result.update(type=lock.l_type, start=lock.l_start, len=lock.l_len, pid=lock.l_pid)
        answer(result)
    elif 'flock' in cmd:
        answer(call(libc.flock(cmd['fd'], cmd['flock'])))
    elif 'close' in cmd:
        os.close(cmd['close'])
        answer({'ok': True})
    elif 'exit' in cmd:
        break

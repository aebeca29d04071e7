#!/usr/bin/env python3
# One side of a race between opens on one node and unlinks on another.
#   openRace.py write PATH SECONDS SIZE: writes PATH (SIZE bytes), unlinks it, again,
#     for SECONDS; prints the rounds made.
#   openRace.py read PATH SECONDS SIZE: opens PATH and reads it to its end, again,
#     for SECONDS; prints JSON: opens made, reads of all SIZE bytes, ESTALE errors
#     and other errors met after a successful open.
# An open may fail (the file is gone) and may see a file still being written
# (fewer bytes); once it succeeded, its reads must not fail.
import errno
import json
import os
import sys
import time

mode, path, seconds, size = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
end = time.monotonic() + seconds
if mode == 'write':
    data = b'k' * size
    rounds = 0
    while time.monotonic() < end:
        with open(path, 'wb') as f:
            f.write(data)
        time.sleep(0.02)
        os.unlink(path)
        rounds += 1
    print(rounds)
else:
    counts = {'opens': 0, 'whole': 0, 'stale': 0, 'errors': 0}
    while time.monotonic() < end:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        counts['opens'] += 1
        got = 0
        try:
            while True:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                got += len(chunk)
            if got == size:
                counts['whole'] += 1
        except OSError as err:
            counts['stale' if err.errno == errno.ESTALE else 'errors'] += 1
        finally:
            os.close(fd)
    print(json.dumps(counts))

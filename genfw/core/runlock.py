"""One writer per run directory: an OS file lock (flock) on ``OUT/.lock``.

The kernel drops the lock when the holding process exits, however it exits (SIGKILL, OOM, power
loss on a local disk), so there is no stale lock to clean up; the file only records who holds it
so the second writer can be told.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from genfw.core.errors import GenfwError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks through fcntl
    fcntl = None

LOCK_NAME = ".lock"


class RunLockedError(GenfwError):
    """Another process holds the run directory."""


class RunLock:
    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    @classmethod
    def acquire(cls, out: str | Path) -> "RunLock":
        path = Path(out) / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:  # pragma: no cover
            return cls(fd, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(path)
            os.close(fd)
            raise RunLockedError(f"{out} is in use by another genfw run ({holder}); wait for it to finish, "
                                 "stop it, or choose another --out") from None
        except OSError:
            os.close(fd)
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.ftruncate(self.fd, 0)  # no stale description once nobody holds it
        except OSError:
            pass
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown: it has not written its details yet"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}: "
            f"{info.get('command', '')}").rstrip(": ")

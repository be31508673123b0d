"""Files that are either the old version or the new one, never half of each (temp file + rename),
created with the permissions the user's umask asks for."""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask: from /proc on Linux, else by setting it and straight back (os.umask can
    only be read that way, and another thread creating a file meanwhile would see 022)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    return 0o777 & ~current_umask()


def fsync_dir(path: str | Path) -> None:
    """Make a rename in `path` durable; silently skipped where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_new(path: str | Path, data: bytes) -> None:
    """Create `path` (must not exist) with `data`, fsynced; mode from the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str | Path, data: bytes | str, prefix: str | None = None) -> Path:
    """Atomically replace `path` with `data`: a kill at any moment leaves the old or the new file.

    The temp file sits next to the target (same filesystem, so the rename is atomic) and is named
    `prefix` + random (default `.<name>.tmp-`) so a cleaner can recognise leftovers.
    """
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{p.name}.tmp-", dir=p.parent)
    try:
        os.fchmod(fd, file_mode())  # mkstemp creates 0600 whatever the umask says
        view = memoryview(raw)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, p)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    fsync_dir(p.parent)
    return p

"""Atomic file writes: write a temporary file beside the target, then rename.

A crash or an error leaves either the old file or the new one under the
target name, never half of one, and no temporary file behind. A missing
folder on the way to the target is created. New files get the usual mode
(``0o666`` less the umask, as ``open()`` would give them); a file that is
replaced keeps its mode.

An `OSError` the user can cause while writing (disk full, no permission, a
directory where the file should go, a file where a folder should be) comes
out as `OutputError`, whose message names the file, the reason and what
survived; it is still an `OSError` with the same ``errno``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from .errors import OutputError

#: errno values a user (a full disk, a read-only folder, a wrong path) causes, not a programming error
USER_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EPERM", "EROFS", "ENOENT", "ENOTDIR", "EISDIR", "EEXIST",
        "ENAMETOOLONG", "ELOOP", "EXDEV", "ETXTBSY", "EMLINK",
    ) if hasattr(errno, name)
)


def is_user_oserror(exc: BaseException) -> bool:
    """Whether ``exc`` is an `OSError` a user causes (see `USER_ERRNOS`).
    Disk-full errors carry no file name; the others must name the file, so an
    unexpected `OSError` from inside a library is not mistaken for one."""
    if not isinstance(exc, OSError) or exc.errno not in USER_ERRNOS:
        return False
    return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG) or bool(exc.filename)


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse, before any work is done, an output path that cannot be a file:
    an existing directory, or a path through an existing file."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory (give a file name)", errno.EISDIR, str(path))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"cannot write {path}: {parent} is a file, not a folder", errno.ENOTDIR,
                                  str(path))
            break
    return path


def _create_temp(folder: Path, name: str) -> str:
    """An empty new file beside the target, created with mode 0o666 & ~umask."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return str(tmp)
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(folder))


def _survived(path: Path, existed: bool) -> str:
    return f"{path} is left as it was" if existed else f"nothing was written to {path}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in the target's folder; on success it replaces
    ``path`` (after the caller has finished writing it), on error it is removed."""
    path = check_output_path(path)
    existed = path.exists()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(path.parent, path.name)
        if existed:
            with contextlib.suppress(OSError):
                os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError) and is_user_oserror(exc):
            why = exc.strerror or str(exc)
            raise OutputError(f"cannot write {path}: {why}; {_survived(path, existed)}", exc.errno,
                              str(path)) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)

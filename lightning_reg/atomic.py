"""The one way this package writes a file: atomically, or not at all.

Every file we write (``metrics.json``, the reports, ``study.json``, ``optimization_results.yaml``, the job
config of a DDP run, the plots, and our checkpoints) goes through :func:`atomic_write` (or
:func:`replace_atomically` for a file a library wrote for us): the bytes go to a temporary file in the target's
own directory (so the same filesystem), are flushed and ``fsync``-ed, and the temporary file is then moved over
the target with ``os.replace``, which is atomic on POSIX and Windows. A reader sees the old complete file or
the new complete one, never a part; a process killed mid-write, a full disk (``ENOSPC``) or a permission error
(``EACCES``) leaves the previous file as it was and no temporary file behind.

A write that fails for a reason of the filesystem raises :class:`WriteError`, an ``OSError`` whose message is
one line naming the file and the cause, for the entry points to print as it is.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "report.md"
    >>> _ = write_text(path, "# one\\n")
    >>> with atomic_write(path) as fh:
    ...     _ = fh.write("# two\\n")
    ...     raise RuntimeError("stopped half-way")  # the old file stays, no temporary file is left
    Traceback (most recent call last):
    ...
    RuntimeError: stopped half-way
    >>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
    ('# one\\n', ['report.md'])
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TMP_SUFFIX",
    "WriteError",
    "atomic_write",
    "is_filesystem_error",
    "replace_atomically",
    "write_bytes",
    "write_text",
]

#: The suffix of our temporary files (``.<name>.<random>.tmp`` next to the target).
TMP_SUFFIX = ".tmp"

#: The errors of the filesystem (not of our code) that a write reports as one line.
_FS_ERRNOS = {
    errno.ENOSPC,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EDQUOT,
    errno.EIO,
    errno.EFBIG,
    errno.ENOENT,
    errno.ENOTDIR,
}


class WriteError(OSError):
    """A file could not be written (full disk, no permission, read-only filesystem...): one line naming the file
    and the cause. Nothing older was changed: the previous file, if any, is intact and no temporary file is left.

    Example:
        >>> import errno
        >>> str(WriteError("/runs/1/metrics.json", OSError(errno.ENOSPC, "No space left on device")))
        'could not write /runs/1/metrics.json: No space left on device (ENOSPC); the previous file, if any, is unchanged'
    """

    def __init__(self, path: str | os.PathLike[str], cause: OSError) -> None:
        code = cause.errno
        name = errno.errorcode.get(code, "") if code is not None else ""
        reason = cause.strerror or str(cause) or type(cause).__name__
        message = f"could not write {os.fspath(path)}: {reason}" + (f" ({name})" if name else "")
        super().__init__(code, message + "; the previous file, if any, is unchanged")
        self.path = os.fspath(path)
        self.cause = cause

    def __str__(self) -> str:
        return str(self.strerror)


def is_filesystem_error(err: BaseException) -> bool:
    """True for an ``OSError`` that a full disk, a permission or a read-only filesystem raises.

    Example:
        >>> is_filesystem_error(OSError(errno.ENOSPC, "No space left on device")), is_filesystem_error(ValueError())
        (True, False)
    """
    return isinstance(err, WriteError) or (isinstance(err, OSError) and err.errno in _FS_ERRNOS)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; on leaving the block, ``fsync`` it and move it over
    ``path``. An exception in the block (or in the write itself) removes the temporary file and leaves ``path``
    as it was; a filesystem error becomes :class:`WriteError`.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb'; got {mode!r}")
    target = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
        if "b" in mode:
            fh: IO[Any] = os.fdopen(fd, mode)
        else:
            fh = os.fdopen(fd, mode, encoding=encoding, newline=newline)
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # mkstemp makes 0600 files; give the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except OSError as err:
        if is_filesystem_error(err) and not isinstance(err, WriteError):
            raise WriteError(target, err) from err
        raise
    finally:
        if tmp is not None:
            _unlink_quietly(tmp)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`); return the path."""
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`); return the path."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def replace_atomically(tmp_path: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Flush ``tmp_path`` (a complete file a library wrote next to ``path``) to disk and move it over ``path``
    in one atomic step (``os.replace``). On a filesystem error the temporary file is removed and
    :class:`WriteError` names ``path``."""
    try:
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as err:
        _unlink_quietly(tmp_path)
        if is_filesystem_error(err):
            raise WriteError(path, err) from err
        raise
    _fsync_dir(Path(path).parent)

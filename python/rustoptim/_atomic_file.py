"""Replacing a file atomically, as ``open(path, "wb")`` would write it but all or nothing.

:func:`write_atomically` writes a new file next to the target, flushes and
fsyncs it, then renames it over the target, so a reader sees the old file or
the new one, never a mix, even if the writer is killed or the disk fills up.
What a plain ``open(path, "wb")`` would keep is kept:

- the file's permission bits (a 0600 file stays 0600) and, where the writer may
  set them, its owner and group; a new file gets ``0o666 & ~umask``;
- a symlink stays a symlink: the file it points to is replaced (a dangling link
  creates the file it names, a link loop is ``OSError(ELOOP)``);
- a file the writer may not write (read-only) is refused with
  ``PermissionError``, a directory with ``IsADirectoryError``, and a device or
  FIFO (``/dev/stdout``) is written in place, since there is nothing to replace.

Errors name the caller's path, never the temporary file's.

Temporary files are named ``.<name>.rustoptim-tmp-<host>-<pid>-<random>``
(``<host>``: 8 hex digits identifying the machine, ``<pid>``: the writer's process
id). A writer killed with SIGKILL cannot remove its temporary file, so before
writing, each save removes the temporary files for the same target left by
processes of this machine that no longer exist. A temporary file of a live process, of
another machine (a shared file system) or of another naming scheme is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import zlib
from typing import IO, Callable

_TEMP_MARK = ".rustoptim-tmp-"
_CHUNK = 1 << 20
# Keeps "." + name + the 45 characters this module adds within the common 255-byte limit.
_LONGEST_NAME_KEPT = 180


def write_atomically(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Replace the file at ``path`` with what ``write`` writes into a seekable, empty binary file."""
    target = _final_target(path)
    existing = _existing_file(target, path)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with tempfile.TemporaryFile() as scratch:
            write(scratch)
            scratch.seek(0)
            with open(target, "wb") as out:
                shutil.copyfileobj(scratch, out, _CHUNK)
        return
    directory, name = os.path.split(target)
    tmp, fd = _create_temp(directory, name, path, existing)
    try:
        with os.fdopen(fd, "w+b") as f:
            _remove_stale_temporaries(directory, name)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _final_target(path: str) -> str:
    """The absolute path of the file to replace: ``path`` itself, or what the symlink ``path`` points to."""
    absolute = os.path.abspath(path)
    if not os.path.islink(absolute):
        return absolute
    resolved = os.path.realpath(absolute)
    if os.path.islink(resolved):  # realpath stops at a link it cannot resolve: a loop
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    return resolved


def _existing_file(target: str, path: str) -> os.stat_result | None:
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if stat.S_ISREG(existing.st_mode) and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    return existing


def _create_temp(directory: str, name: str, path: str, existing: os.stat_result | None) -> tuple[str, int]:
    """A new empty file next to the target, with the target's permissions if it exists."""
    # Created with the final permission bits already (the umask can only
    # remove some), so the data is never readable by more users than the target's.
    mode = stat.S_IMODE(existing.st_mode) & 0o777 if existing is not None else 0o666
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(directory, f"{_temp_prefix(name)}{_host_tag()}-{os.getpid()}-{secrets.token_hex(6)}")
        try:
            fd = os.open(tmp, flags, mode)
        except FileExistsError:
            continue
        except OSError as e:
            # Name the caller's path: the temporary file means nothing to them.
            raise OSError(e.errno, e.strerror, path) from None
        break
    if existing is not None:
        try:
            _copy_owner_and_mode(fd, tmp, existing)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return tmp, fd


def _copy_owner_and_mode(fd: int, tmp: str, existing: os.stat_result) -> None:
    mine = os.fstat(fd)
    if hasattr(os, "fchown") and (mine.st_uid, mine.st_gid) != (existing.st_uid, existing.st_gid):
        # Only root may give a file away, and only a member may set a group;
        # otherwise the new file keeps the writer's owner, as any replacing write would.
        with contextlib.suppress(OSError):
            os.fchown(fd, existing.st_uid, existing.st_gid)
    mode = stat.S_IMODE(existing.st_mode) & 0o777
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)  # restores bits the umask removed (e.g. 0664 under umask 022)
    else:
        os.chmod(tmp, mode)


def _temp_prefix(name: str) -> str:
    stem = name if len(os.fsencode(name)) <= _LONGEST_NAME_KEPT else name[:40]
    return f".{stem}{_TEMP_MARK}"


@functools.cache
def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'surrogateescape')):08x}"


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Delete temporary files for ``name`` whose writer, a process on this machine, has died."""
    if os.name != "posix":  # no cheap, safe "is this process alive" test elsewhere
        return
    pattern = re.compile(re.escape(_temp_prefix(name)) + r"([0-9a-f]{8})-([0-9]{1,10})-[0-9a-f]{12}\Z")
    try:
        with os.scandir(directory) as entries:
            stale = [
                entry.path for entry in entries
                if (match := pattern.match(entry.name)) is not None
                and match[1] == _host_tag()
                and _process_is_gone(int(match[2]))
                and entry.is_file(follow_symlinks=False)
            ]
    except OSError:
        return
    for leftover in stale:
        with contextlib.suppress(OSError):
            os.unlink(leftover)


def _process_is_gone(pid: int) -> bool:
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # EPERM: it exists but belongs to another user
        return False
    return False


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable. Not possible on every platform, hence best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

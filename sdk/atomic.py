"""Atomic outputs: data goes to a temporary sibling ``.NAME.unet-sdk-partial-HOST-PID-*`` first and is
renamed into place, so a crash never leaves a half-written file under the real name; temporaries left by
killed processes of this host are removed by the next write into the same folder. An existing output (also
a dangling symlink) is only replaced when asked.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import InvalidInputError, OutputExistsError

logger = logging.getLogger(__name__)

PARTIAL_MARK = ".unet-sdk-partial-"


def _partial_prefix(path: Path) -> str:
    return f".{path.name}{PARTIAL_MARK}{socket.gethostname()}-"


_SWEPT: set[str] = set()  # folders already cleared of stale partials by this process


def remove_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries in ``folder`` that processes of this host left when they were killed
    (their process id no longer runs); returns what went. Other hosts' temporaries are left alone."""
    folder = Path(folder)
    mark = f"{PARTIAL_MARK}{socket.gethostname()}-"
    removed = []
    with contextlib.suppress(OSError):
        for candidate in folder.iterdir():
            name = candidate.name
            if not name.startswith(".") or mark not in name:
                continue
            pid_text = name.split(mark, 1)[1].split("-", 1)[0]
            if not pid_text.isdigit() or _process_alive(int(pid_text)):
                continue
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
            logger.warning("removed %s, left by an interrupted write", candidate)
    return removed


def _sweep_once(folder: Path) -> None:
    """:func:`remove_stale_partials` for each output folder once per process, not at every write."""
    key = str(folder.resolve())
    if key not in _SWEPT:
        _SWEPT.add(key)
        remove_stale_partials(folder)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else remove it.

    Raises :class:`OutputExistsError` up front if ``path`` exists (a dangling symlink counts) and
    ``overwrite`` is false. Works for files and for directories (zarr stores). Temporaries left in the
    output folder by killed processes of this host are removed first (once per folder and process).
    """
    path = Path(path)
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInputError(f"{path}: output directory {parent} does not exist")
    _sweep_once(parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_partial_prefix(path)}{os.getpid()}-", suffix=path.suffix, dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers create it themselves (some refuse an existing file, zarr wants a directory)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # os.replace cannot replace a non-empty directory
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise

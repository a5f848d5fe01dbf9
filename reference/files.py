"""Files that are never half-written: every report, metrics file and checkpoint goes through here."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def previous_path(path) -> Path:
    """``ckpt.pt`` → ``ckpt.prev.pt``: the file written before the current one (``keep_previous``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_write(path, data: str | bytes | Callable[[Path], object], *, keep_previous: bool = False) -> str:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``: a crash never leaves a
    half-written file (CI may read a report while a run is still going; a killed run keeps its last checkpoint).

    ``data``: text (UTF-8), bytes, or a writer called with the temporary path (``torch.save``, a CSV writer).
    ``keep_previous``: first move the old file to :func:`previous_path` (a checkpoint damaged later can be
    replaced by the one before). The file gets the umask's permissions, not ``mkstemp``'s 0600, so an artifact
    server can read it. Returns the absolute path.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        if callable(data):
            os.close(fd)
            data(Path(tmp))
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if keep_previous and os.path.isfile(path):
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path

"""Where the project keeps its caches and generated data.

Everything the book downloads, converts or generates lives under one data folder:
``$DISENTANGLED_FACE_DATA`` when set, else ``data/`` at the repository root (for an editable
install), else ``~/.cache/disentangled_face``. Sub-folders are keyed by the config that made
them (see :func:`config_hash`) so a changed config never reads a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

DATA_ENV = "DISENTANGLED_FACE_DATA"


def repo_root() -> Path | None:
    """The repository root when the package runs from a source checkout, else ``None``."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def data_dir(*parts: str, create: bool = True) -> Path:
    """Path of the data folder (or a sub-folder of it), created on demand.

    Parameters
    ----------
    *parts : str
        Sub-folder names below the data folder.
    create : bool
        Create the folder when missing.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        base = Path(env).expanduser()
    elif repo_root() is not None:
        base = repo_root() / "data"
    else:
        base = Path.home() / ".cache" / "disentangled_face"
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def config_hash(config: Any, length: int = 10) -> str:
    """A short, stable SHA-256 hash of a JSON-serialisable config (keys sorted)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (briefly visible to other threads)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target`` atomically.

    A crash or exception inside the block leaves ``target`` untouched (the temporary file is
    removed), so a half-written cache or checkpoint never looks complete. The final file gets
    the mode of a file the process creates with ``open`` (``0o666`` less the umask: ``0o644``
    under the usual umask ``022``), not the ``0o600`` of :func:`tempfile.mkstemp`, so caches
    shared between users stay readable.

    Parameters
    ----------
    target : str or PathLike
        The final file; its folder is created when missing.
    suffix : str
        Ends the temporary file's name before ``.part`` (for writers that look at the suffix).

    Raises
    ------
    OSError
        When the folder cannot be created or the file cannot be moved onto ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix + ".part")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()

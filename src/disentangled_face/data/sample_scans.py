"""A real textured face scan for the book, fetched from the package registry and verified by hash.

The source distribution of ``menpo3d`` 0.8.6 on PyPI (``menpo3d-0.8.6.tar.gz``) ships one
textured 3D face scan among its test assets: ``james.obj`` (6,393 vertices, 12,228 triangles,
per-corner texture coordinates; written by MeshLab), its material ``james.obj.mtl``, its
2400 x 1600 texture ``james.jpg`` and 68 iBUG landmarks in 3D, ``james.ljson`` (menpo's
format). menpo3d's authors say it was captured with a Di4D camera system
(https://github.com/menpo/menpo3d/issues/45).

**Terms.** The sdist carries one licence, ``LICENSE.txt``: the 3-clause BSD licence,
copyright Imperial College London and others; the scan files ship inside the package under
it, and the sdist has no separate terms, notice or consent statement for them (checked: its
``README.md``, ``AUTHORS.txt``, ``PKG-INFO`` and ``MANIFEST.in`` say nothing about the data).
The scan is of a real person. This project therefore never commits or redistributes the files:
:func:`fetch_menpo3d_james` downloads the sdist from PyPI with pip when the book runs, keeps
the four files under the data folder (ignored by git), and the book cites their source and
licence.

:func:`fetch_menpo3d_james` runs ``python -m pip download menpo3d==0.8.6 --no-deps
--no-binary :all:`` in hash-checking mode (pip rejects an archive whose SHA-256 is not the
pinned one before it unpacks it; note that pip then runs the sdist's ``setup.py`` to read its
metadata, as for any sdist), checks the archive's SHA-256 again, takes only the four files
(:func:`extract_verified`: each member checked by :func:`tarfile.data_filter`, read as bytes
and written under its own base name, so no member name ever becomes an output path), checks
each file's SHA-256 and writes it atomically. A second call finds the verified files and does
nothing else.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..paths import atomic_path, data_dir
from ..shape.ict_facekit import HashMismatchError, sha256_file

__all__ = ["MENPO3D_VERSION", "MENPO3D_SDIST", "MENPO3D_SDIST_SHA256", "JAMES_FILES", "SampleScanError",
           "HashMismatchError", "fetch_menpo3d_james", "extract_verified"]

MENPO3D_VERSION = "0.8.6"
#: The sdist's file name on PyPI.
MENPO3D_SDIST = f"menpo3d-{MENPO3D_VERSION}.tar.gz"
#: SHA-256 of ``menpo3d-0.8.6.tar.gz`` as PyPI serves it.
MENPO3D_SDIST_SHA256 = "96ad2c8b55b74e026cdc190cf6b1564ad7c8e6c53976cf897d6a1bf4940f084a"
#: The four files taken from the sdist (their member names below ``menpo3d-0.8.6/menpo3d/data/``)
#: and their SHA-256.
JAMES_FILES = {
    "james.obj": "80cb729b6a751b25794d9d571668ff3c022f111119b307dd93dc8fbed6eed110",
    "james.obj.mtl": "90aa99e8d939fa6e9849e15c7b39a3364b8814a494a7fe59baca0484104c9ca4",
    "james.jpg": "829589c076a9cb7b8904b08cc0b301a01e75d6096bf2ca01ed7a8e9d4a615a77",
    "james.ljson": "02a9e32271c47db90ec51ec0027eb302b68e52f974d6b2856a3f7e55b13b0ee2",
}
_MEMBER_DIR = f"menpo3d-{MENPO3D_VERSION}/menpo3d/data/"


class SampleScanError(RuntimeError):
    """The sample scan could not be fetched: pip failed, a file was missing from the archive or
    refused by the safety checks (a hash that differs raises
    :class:`~disentangled_face.shape.ict_facekit.HashMismatchError`, a ValueError)."""


def _verified(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / name).is_file() and sha256_file(folder / name) == sha for name, sha in files.items())


def extract_verified(sdist: str | os.PathLike, dest: str | os.PathLike, files: dict[str, str],
                     member_dir: str, sdist_sha256: str | None = None) -> dict[str, Path]:
    """Take named files out of a ``.tar.gz``, each verified by SHA-256, and write them atomically.

    Safe against hostile archives: only the members ``member_dir + name`` are read; each must
    be a regular file that :func:`tarfile.data_filter` accepts (no absolute path, no ``..``, no
    link, no device), and its bytes are written to ``dest / name`` (the base name given here,
    never the member's path), through :func:`disentangled_face.paths.atomic_path`, only after
    its SHA-256 matched.

    Parameters
    ----------
    sdist : path
        The archive (gzip-compressed tar).
    dest : path
        Folder the files are written to (created when missing).
    files : dict name -> hex SHA-256
        Base names (no ``/``) and their expected hashes.
    member_dir : str
        The members' folder inside the archive, ending in ``/`` (e.g. ``menpo3d-0.8.6/menpo3d/data/``).
    sdist_sha256 : str, optional
        Expected SHA-256 of the archive itself, checked first.

    Returns
    -------
    dict name -> Path
        The written files.

    Raises
    ------
    HashMismatchError
        (a ValueError) The archive's or a file's SHA-256 differs (both hashes named).
    SampleScanError
        A file is missing from the archive, a member is not a regular file or is refused by the
        data filter, the archive is not a readable ``.tar.gz``.
    ValueError
        A name in ``files`` that is not a plain base name.
    """
    sdist, dest = Path(sdist), Path(dest)
    for name in files:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"files must be plain base names, got {name!r}")
    if sdist_sha256 is not None:
        got = sha256_file(sdist)
        if got != sdist_sha256:
            raise HashMismatchError(f"{sdist.name}: SHA-256 {got}, expected {sdist_sha256}; the download is not the "
                                  "pinned archive (corrupted, or the index served another file)")
    out: dict[str, Path] = {}
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for name, sha in files.items():
                try:
                    member = tar.getmember(member_dir + name)
                except KeyError:
                    raise SampleScanError(f"{sdist.name}: no member {member_dir + name!r} in the archive") from None
                try:
                    member = tarfile.data_filter(member, str(dest))
                except tarfile.FilterError as exc:
                    raise SampleScanError(f"{sdist.name}: member {member.name!r} refused by tarfile's data "
                                          f"filter ({exc})") from exc
                if not member.isfile():
                    raise SampleScanError(f"{sdist.name}: member {member.name!r} is not a regular file")
                fh = tar.extractfile(member)
                blob = fh.read() if fh is not None else b""
                got = hashlib.sha256(blob).hexdigest()
                if got != sha:
                    raise HashMismatchError(f"{sdist.name}: {name} has SHA-256 {got}, expected {sha}")
                with atomic_path(dest / name, suffix=Path(name).suffix) as tmp:
                    tmp.write_bytes(blob)
                out[name] = dest / name
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SampleScanError(f"{sdist}: not a readable .tar.gz archive ({exc})") from exc
    return out


def _pip_download(requirement: str, sha256: str, folder: Path) -> Path:
    """``python -m pip download`` of one sdist in hash-checking mode into ``folder``."""
    req = folder / "requirements.txt"
    req.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
           "--disable-pip-version-check", "--no-input", "-r", str(req), "-d", str(folder)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SampleScanError(f"could not run pip ({' '.join(cmd)}): {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise SampleScanError(f"pip download of {requirement} failed (exit {proc.returncode}: no network, no PyPI, or "
                              f"an archive whose hash pip refused); "
                              f"pip said:\n{tail}")
    found = sorted(folder.glob("*.tar.gz"))
    if len(found) != 1:
        raise SampleScanError(f"pip download of {requirement} left {[p.name for p in found]} in {folder}, "
                              f"expected one .tar.gz")
    return found[0]


def fetch_menpo3d_james(folder: str | os.PathLike | None = None, sdist: str | os.PathLike | None = None) -> Path:
    """The menpo3d ``james`` scan (OBJ, MTL, JPEG texture, 68 landmarks), fetched once and verified.

    Downloads ``menpo3d-0.8.6.tar.gz`` from PyPI with pip (see the module docstring, and for
    the data's terms: BSD-3-Clause, the sdist's only licence; never committed), checks its
    SHA-256 (:data:`MENPO3D_SDIST_SHA256`), takes ``james.obj``, ``james.obj.mtl``,
    ``james.jpg`` and ``james.ljson`` (:func:`extract_verified`, each checked against
    :data:`JAMES_FILES`) and writes them atomically into ``folder``. When the four files are
    already there with the right hashes nothing is downloaded.

    Parameters
    ----------
    folder : path, optional
        Default ``data_dir("scans", "menpo3d-james")``.
    sdist : path, optional
        An already downloaded ``menpo3d-0.8.6.tar.gz`` to take the files from (no pip; its
        hash is still checked).

    Returns
    -------
    Path
        The folder; load the scan with ``data.load_scan(folder / "james.obj")`` (it finds
        ``james.ljson``).

    Raises
    ------
    SampleScanError
        pip fails (no network, no PyPI; pip's last lines are quoted), a file is missing from
        the archive.
    HashMismatchError
        (a ValueError) The archive's or a file's SHA-256 is not the pinned one.
    """
    folder = Path(folder) if folder is not None else data_dir("scans", "menpo3d-james")
    if _verified(folder, JAMES_FILES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="menpo3d-sdist-") as tmp:
        path = Path(sdist) if sdist is not None else _pip_download(f"menpo3d=={MENPO3D_VERSION}",
                                                                  MENPO3D_SDIST_SHA256, Path(tmp))
        extract_verified(path, folder, JAMES_FILES, _MEMBER_DIR, MENPO3D_SDIST_SHA256)
    return folder

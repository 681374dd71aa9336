"""The ICT-FaceKit morphable model: fetch, verify, extract, convert and load it.

The default model of the book is ICT-FaceKit (MIT licence, USC Institute for Creative
Technologies), pinned to one commit of its GitHub repository. This module

1. finds the archive of that commit: an explicit path, the ``ICT_FACEKIT_ARCHIVE`` environment
   variable, a copy already under ``data/ict-facekit/``, or a download from GitHub with a
   progress bar;
2. extracts only the model files, refusing any member whose path leaves the target folder
   (:func:`tarfile.data_filter`);
3. verifies every extracted file against SHA-256 sums pinned in this package;
4. converts the face area once into a compact ``.npz`` cache in millimetres (atomic write).

Command line::

    python -m disentangled_face.shape.ict_facekit [--archive PATH] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tarfile
from importlib import resources
from pathlib import Path

import numpy as np

from ..paths import atomic_path, data_dir
from .morphable import MorphableModel

ICT_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
ICT_URL = f"https://github.com/ICT-VGL/ICT-FaceKit/archive/{ICT_COMMIT}.tar.gz"
ICT_ARCHIVE_NAME = f"ICT-FaceKit-{ICT_COMMIT}.tar.gz"
ARCHIVE_ENV = "ICT_FACEKIT_ARCHIVE"
CACHE_NAME = "ict_face_mm.npz"

#: Face area of the ICT-FaceKit head mesh (see the archive's README).
N_FACE_VERTICES = 9409
N_FACE_POLYGONS = 9230
N_IDENTITY = 100
CM_TO_MM = 10.0


class ModelNotFoundError(FileNotFoundError):
    """No morphable model could be had (no archive, no cache, no network)."""


class HashMismatchError(ValueError):
    """An extracted model file does not match its pinned SHA-256 sum."""


def pinned_sha256() -> dict[str, str]:
    """SHA-256 of every model file inside the archive, keyed by path below its top folder."""
    text = resources.files("disentangled_face").joinpath("ict_facekit.sha256").read_text()
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    return sums


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, target: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``target`` with a tqdm progress bar; written atomically.

    Raises
    ------
    ModelNotFoundError
        When the download fails (no network, HTTP error); the message names the URL and the
        environment variable that points at a local archive instead.
    """
    import requests
    from tqdm.auto import tqdm

    try:
        with requests.get(url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            total = int(r.headers.get("content-length", 0)) or None
            with atomic_path(target) as tmp, open(tmp, "wb") as f, tqdm(
                total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress
            ) as bar:
                for block in r.iter_content(1 << 20):
                    f.write(block)
                    bar.update(len(block))
    except (requests.RequestException, OSError) as exc:
        raise ModelNotFoundError(_missing_message(f"the download failed ({exc})")) from exc
    return target


def _missing_message(why: str) -> str:
    return (
        f"The ICT-FaceKit morphable model is missing: {why}. Download the archive of commit "
        f"{ICT_COMMIT} from {ICT_URL} and set the environment variable {ARCHIVE_ENV} to its "
        f"path (or pass archive=...), then run `python -m disentangled_face.shape.ict_facekit`."
    )


def locate_archive(archive: str | os.PathLike | None = None, allow_download: bool = True,
                   progress: bool = True) -> Path:
    """Find the ICT-FaceKit archive: argument, ``$ICT_FACEKIT_ARCHIVE``, local copy, download.

    Raises
    ------
    ModelNotFoundError
        When a given path does not exist, or nothing is found and the download fails or is
        not allowed.
    """
    for source, candidate in (("argument", archive), (ARCHIVE_ENV, os.environ.get(ARCHIVE_ENV))):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise ModelNotFoundError(_missing_message(f"{source} points at {path}, which is not a file"))
            return path
    local = data_dir("ict-facekit") / ICT_ARCHIVE_NAME
    if local.is_file():
        return local
    if not allow_download:
        raise ModelNotFoundError(_missing_message("no archive was given and downloading is off"))
    return download(ICT_URL, local, progress=progress)


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike,
                 wanted: set[str] | None = None) -> dict[str, Path]:
    """Extract members of a ``.tar.gz`` safely and return ``{relative name: path}``.

    Member names are taken relative to the archive's single top folder. Only members whose
    relative names are in ``wanted`` are extracted (all regular files when ``None``).

    Raises
    ------
    tarfile.FilterError
        (from :func:`tarfile.data_filter`) when a member is absolute, leaves ``target`` through
        ``..`` or a link, or is a device file.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    with tarfile.open(archive, "r:*") as tar:
        members = []
        for m in tar.getmembers():
            # data_filter refuses absolute paths, '..' escapes and links that leave target.
            tarfile.data_filter(m, str(target))
            rel = m.name.split("/", 1)[1] if "/" in m.name else ""
            if m.isfile() and rel and (wanted is None or rel in wanted):
                members.append(m)
                out[rel] = target / m.name
        tar.extractall(target, members=members, filter="data")
    return out


def verify(files: dict[str, Path], sums: dict[str, str]) -> None:
    """Check each extracted file against its pinned SHA-256.

    Raises
    ------
    HashMismatchError
        On the first file whose hash differs, or when a pinned file is missing.
    """
    for name, digest in sums.items():
        if name not in files:
            raise HashMismatchError(f"{name} is missing from the archive (expected SHA-256 {digest})")
        got = sha256_file(files[name])
        if got != digest:
            raise HashMismatchError(f"{name}: SHA-256 {got} does not match the pinned {digest}")


def _read_obj_vertices(path: Path) -> np.ndarray:
    """Vertex positions ``(V, 3)`` of an OBJ file: its ``v x y z`` lines in file order.

    Only the position lines are read (a regular expression over the file's bytes), about 50
    times faster than a full OBJ parser such as trimesh's, which also builds the texture
    seams' duplicate vertices after the file's own (the first V rows agree exactly).

    Raises
    ------
    ValueError
        The file has no vertex lines, or a vertex line without exactly three coordinates.
    """
    import re

    lines = re.findall(rb"^v ([^\n]*)", Path(path).read_bytes(), flags=re.M)
    tokens = b" ".join(lines).split()
    if not lines or len(tokens) != 3 * len(lines):
        raise ValueError(f"{path}: expected OBJ vertex lines 'v x y z', found {len(lines)} vertex "
                         f"lines with {len(tokens)} coordinates")
    return np.asarray(tokens, dtype=np.float64).reshape(-1, 3)


def _read_obj_face_polygons(path: Path, n_polygons: int) -> list[list[int]]:
    """The first ``n_polygons`` polygons of an OBJ (0-based vertex indices, quads kept)."""
    polys = []
    with open(path) as f:
        for line in f:
            if line.startswith("f "):
                polys.append([int(tok.split("/")[0]) - 1 for tok in line.split()[1:]])
                if len(polys) == n_polygons:
                    break
    return polys


def triangulate(polygons: list[list[int]]) -> np.ndarray:
    """Fan-triangulate convex polygons (triangles and quads) into ``(m, 3)`` int32 indices."""
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int32)


def convert(model_dir: Path, target: Path) -> Path:
    """Convert extracted ``FaceXModel/`` files into the compact face-area cache (mm).

    The cache holds ``mean`` (n, 3), ``id_basis`` (100, n, 3) per unit of a standard-normal
    ``alpha_id``, ``exp_basis`` (53, n, 3) per unit blendshape weight, ``exp_names`` (53,),
    ``landmarks`` (68,) 0-based vertex indices (iBUG order), ``triangles`` (m, 3), with
    n = 9,409 face-area vertices, all coordinates in millimetres.
    """
    n = N_FACE_VERTICES
    neutral_path = model_dir / "generic_neutral_mesh.obj"
    neutral = _read_obj_vertices(neutral_path)
    meta = json.loads((model_dir / "vertex_indices.json").read_text())
    exp_names = list(meta["expressions"])
    landmarks = np.asarray(meta["idx_to_landmark_verts"], dtype=np.int64)
    if landmarks.shape != (68,) or landmarks.min() < 0 or landmarks.max() >= n:
        raise ValueError(f"idx_to_landmark_verts must hold 68 indices in [0, {n}), got {landmarks.shape}")
    polygons = _read_obj_face_polygons(neutral_path, N_FACE_POLYGONS)
    tris = triangulate(polygons)
    if tris.max() >= n:
        raise ValueError("a face-area polygon uses a vertex outside the face area")

    def mode(name: str) -> np.ndarray:
        return ((_read_obj_vertices(model_dir / f"{name}.obj") - neutral)[:n] * CM_TO_MM).astype(np.float32)

    from tqdm.auto import tqdm

    names = [f"identity{i:03d}" for i in range(N_IDENTITY)] + exp_names
    modes = [mode(nm) for nm in tqdm(names, desc="converting ICT-FaceKit", unit="mesh")]
    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                mean=(neutral[:n] * CM_TO_MM).astype(np.float32),
                id_basis=np.stack(modes[:N_IDENTITY]),
                exp_basis=np.stack(modes[N_IDENTITY:]),
                exp_names=np.asarray(exp_names),
                landmarks=landmarks,
                triangles=tris,
                commit=np.asarray(ICT_COMMIT),
            )
    return target


def fetch_ict_facekit(archive: str | os.PathLike | None = None, force: bool = False,
                      allow_download: bool = True, progress: bool = True) -> Path:
    """Return the path of the converted ICT-FaceKit cache, making it on first use.

    Parameters
    ----------
    archive : path, optional
        A local copy of the archive of commit ``ICT_COMMIT``. Defaults to
        ``$ICT_FACEKIT_ARCHIVE``, then ``data/ict-facekit/``, then a download from GitHub.
    force : bool
        Rebuild the cache even when it exists.
    allow_download : bool
        Try GitHub when no local archive is found.

    Raises
    ------
    ModelNotFoundError
        No archive could be found or downloaded (the message says what to set).
    HashMismatchError
        An extracted file differs from its pinned SHA-256.
    tarfile.FilterError
        The archive holds a member that would leave the extraction folder.
    """
    folder = data_dir("ict-facekit")
    cache = folder / CACHE_NAME
    if cache.is_file() and not force:
        return cache
    path = locate_archive(archive, allow_download=allow_download, progress=progress)
    sums = pinned_sha256()
    files = safe_extract(path, folder / "extracted", wanted=set(sums))
    verify(files, sums)
    model_dir = files["FaceXModel/generic_neutral_mesh.obj"].parent
    return convert(model_dir, cache)


def load_ict_facekit(archive: str | os.PathLike | None = None, **fetch_kwargs) -> MorphableModel:
    """Load the ICT-FaceKit face-area model (9,409 vertices, 100 + 53 modes, mm).

    Fetches and converts the model on first use (see :func:`fetch_ict_facekit`).

    Raises
    ------
    ModelNotFoundError
        When the model cannot be found or downloaded.
    """
    path = fetch_ict_facekit(archive, **fetch_kwargs)
    with np.load(path, allow_pickle=False) as z:
        return MorphableModel(
            mean=z["mean"], id_basis=z["id_basis"], exp_basis=z["exp_basis"],
            triangles=z["triangles"], landmarks=z["landmarks"],
            exp_names=[str(s) for s in z["exp_names"]], exp_bounds=(0.0, 1.0),
            name="ICT-FaceKit (face area)",
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch and convert the ICT-FaceKit model.")
    parser.add_argument("--archive", help=f"local archive (default: ${ARCHIVE_ENV} or download)")
    parser.add_argument("--force", action="store_true", help="rebuild the cache")
    parser.add_argument("--no-download", action="store_true", help="never use the network")
    args = parser.parse_args(argv)
    try:
        path = fetch_ict_facekit(args.archive, force=args.force, allow_download=not args.no_download)
    except ModelNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    print(path)


if __name__ == "__main__":
    main()

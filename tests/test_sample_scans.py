"""The real-scan section's pieces: the verified sdist fetch (no network), texture sampling, the
render-detect-fit pipeline on a small synthetic textured scan."""

import hashlib
import io
import subprocess
import tarfile

import numpy as np
import pytest

from disentangled_face.data import sample_scans as ss
from disentangled_face.data.records import DatasetFormatError, Scan3D
from disentangled_face.data.scan_texture import ObjTexture, read_obj_texture, render_mesh, sample_texture, vertex_colors
from disentangled_face.data.scans import read_mesh
from disentangled_face.shape.ict_facekit import HashMismatchError

TOP = "pkg-1.0/pkg/data/"
FILES = {"a.obj": b"v 0 0 0\n", "a.jpg": b"\xff\xd8 not really a jpeg", "a.ljson": b"{}"}


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _sdist(path, members: dict[str, bytes], extra=()):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for info in extra:
            tar.addfile(info)
    return path


def _fake(tmp_path):
    arc = _sdist(tmp_path / "pkg-1.0.tar.gz", {TOP + k: v for k, v in FILES.items()} | {"pkg-1.0/setup.py": b"x"})
    return arc, {k: _sha(v) for k, v in FILES.items()}


# ----------------------------------------------------------------------------- verified extraction
def test_extract_verified_takes_only_the_named_files(tmp_path):
    arc, sums = _fake(tmp_path)
    out = ss.extract_verified(arc, tmp_path / "dest", sums, TOP, ss.sha256_file(arc))
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["a.jpg", "a.ljson", "a.obj"]
    assert {k: p.read_bytes() for k, p in out.items()} == FILES


def test_extract_verified_refuses_wrong_hashes(tmp_path):
    arc, sums = _fake(tmp_path)
    with pytest.raises(HashMismatchError, match="pkg-1.0.tar.gz: SHA-256 .* expected 0{64}"):
        ss.extract_verified(arc, tmp_path / "d", sums, TOP, "0" * 64)
    bad = dict(sums, **{"a.jpg": "f" * 64})
    with pytest.raises(HashMismatchError, match="a.jpg has SHA-256 .* expected f{64}"):
        ss.extract_verified(arc, tmp_path / "d", bad, TOP)
    assert not (tmp_path / "d" / "a.jpg").exists()          # nothing written for the bad file


def test_extract_verified_missing_member_and_bad_names(tmp_path):
    arc, sums = _fake(tmp_path)
    with pytest.raises(ss.SampleScanError, match="no member 'pkg-1.0/pkg/data/b.obj'"):
        ss.extract_verified(arc, tmp_path / "d", {"b.obj": "0" * 64}, TOP)
    with pytest.raises(ValueError, match="plain base names"):
        ss.extract_verified(arc, tmp_path / "d", {"../a.obj": "0" * 64}, TOP)
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ss.SampleScanError, match="not a readable .tar.gz"):
        ss.extract_verified(tmp_path / "junk.tar.gz", tmp_path / "d", sums, TOP)


def test_extract_verified_refuses_links_and_directories(tmp_path):
    link = tarfile.TarInfo(TOP + "evil.obj")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    folder = tarfile.TarInfo(TOP + "dir.obj")
    folder.type = tarfile.DIRTYPE
    arc = _sdist(tmp_path / "x.tar.gz", {}, extra=[link, folder])
    with pytest.raises(ss.SampleScanError, match="refused by tarfile's data filter"):
        ss.extract_verified(arc, tmp_path / "d", {"evil.obj": "0" * 64}, TOP)
    with pytest.raises(ss.SampleScanError, match="not a regular file"):
        ss.extract_verified(arc, tmp_path / "d", {"dir.obj": "0" * 64}, TOP)
    assert not (tmp_path / "d" / "evil.obj").exists() and not (tmp_path / "d" / "dir.obj").exists()


def test_fetch_downloads_once_then_uses_the_cache(tmp_path, monkeypatch):
    arc, sums = _fake(tmp_path)
    calls = []

    def fake_pip(req, sha, folder):
        calls.append((req, sha))
        return arc

    monkeypatch.setattr(ss, "JAMES_FILES", sums)
    monkeypatch.setattr(ss, "_MEMBER_DIR", TOP)
    monkeypatch.setattr(ss, "MENPO3D_SDIST_SHA256", ss.sha256_file(arc))
    monkeypatch.setattr(ss, "_pip_download", fake_pip)
    dest = tmp_path / "scan"
    assert ss.fetch_menpo3d_james(dest) == dest
    assert calls == [("menpo3d==0.8.6", ss.sha256_file(arc))]
    assert (dest / "a.obj").read_bytes() == FILES["a.obj"]
    ss.fetch_menpo3d_james(dest)
    assert len(calls) == 1                                   # cached: no second download
    (dest / "a.ljson").write_bytes(b"tampered")
    ss.fetch_menpo3d_james(dest)                             # a changed file is fetched again
    assert len(calls) == 2 and (dest / "a.ljson").read_bytes() == b"{}"


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    def failing_run(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--require-hashes" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies menpo3d")

    monkeypatch.setattr(ss.subprocess, "run", failing_run)
    with pytest.raises(ss.SampleScanError, match="(?s)pip download of menpo3d==0.8.6 failed .*Could not find a version"):
        ss.fetch_menpo3d_james(tmp_path / "scan")
    req = list(tmp_path.glob("scan/*"))
    assert req == []                                         # nothing left in the target


# ----------------------------------------------------------------------------- texture sampling
def _linear_texture(H=8, W=10):
    """A float texture whose red is 0.01 x column and green 0.02 x row (texel indices)."""
    j, i = np.meshgrid(np.arange(W), np.arange(H))
    return np.stack([0.01 * j, 0.02 * i, np.full((H, W), 0.5)], -1)


def test_sample_texture_is_bilinear_with_t_up():
    H, W = 8, 10
    tex = _linear_texture(H, W)
    rng = np.random.default_rng(0)
    uv = rng.uniform([0.5 / W, 0.5 / H], [1 - 0.5 / W, 1 - 0.5 / H], size=(50, 2))   # between texel centres
    got = sample_texture(tex, uv)
    col, row = uv[:, 0] * W - 0.5, (1 - uv[:, 1]) * H - 0.5
    np.testing.assert_allclose(got, np.stack([0.01 * col, 0.02 * row, np.full(50, 0.5)], -1), atol=1e-12)
    # the centre of texel (row 0, column 0), the image's top-left, is at s = 0.5 / W, t = 1 - 0.5 / H
    img = np.zeros((H, W, 3), np.uint8)
    img[0, 0] = 255
    np.testing.assert_allclose(sample_texture(img, [[0.5 / W, 1 - 0.5 / H]])[0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"uv must be finite \(k, 2\)"):
        sample_texture(tex, np.zeros((3, 3)))


def _quad_obj(tmp_path, seam=True):
    """A unit quad as one OBJ polygon with its texture (and, with ``seam``, vertex 0 used by a
    second triangle with another texture coordinate)."""
    from PIL import Image

    Image.fromarray((255 * _linear_texture()).astype(np.uint8)).save(tmp_path / "t.png")
    (tmp_path / "q.mtl").write_text("newmtl m\nmap_Kd t.png\n")
    lines = ["mtllib ./q.mtl", "v 0 0 0", "v 1 0 0", "v 1 1 0", "v 0 1 0",
             "vt 0.1 0.1", "vt 0.9 0.1", "vt 0.9 0.9", "vt 0.1 0.9", "vt 0.5 0.5",
             "f 1/1 2/2 3/3 4/4"]
    if seam:
        lines.append("f 1/5 3/3 4/4")
    (tmp_path / "q.obj").write_text("\n".join(lines) + "\n")
    return tmp_path / "q.obj"


def test_read_obj_texture_matches_the_mesh_corner_for_corner(tmp_path):
    path = _quad_obj(tmp_path)
    v, f = read_mesh(path)
    tex = read_obj_texture(path)
    assert tex.face_uv.shape == f.shape == (3, 3)
    np.testing.assert_array_equal(tex.face_uv, [[0, 1, 2], [0, 2, 3], [4, 2, 3]])   # the polygon's fan, then the seam
    assert tex.image.shape == (8, 10, 3) and tex.path.name == "t.png"
    (tmp_path / "n.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(DatasetFormatError, match=r"n.obj:4: every face corner needs a texture index \(v/vt\)"):
        read_obj_texture(tmp_path / "n.obj")


def test_vertex_colors_average_the_corners(tmp_path):
    path = _quad_obj(tmp_path)
    v, f = read_mesh(path)
    tex = read_obj_texture(path)
    col = vertex_colors(tex, f, len(v))
    at = lambda k: sample_texture(tex.image, tex.uv[[k]])[0]
    # vertex 0 is a corner of three triangles: twice at vt 1, once at vt 5 (the seam)
    np.testing.assert_allclose(col[0], (2 * at(0) + at(4)) / 3)
    np.testing.assert_allclose(col[1], at(1))
    np.testing.assert_allclose(col[2], at(2))


def test_render_mesh_splits_seams_and_subdivides(tmp_path):
    path = _quad_obj(tmp_path)
    v, f = read_mesh(path)
    tex = read_obj_texture(path)
    m0 = render_mesh(v, f, tex, subdivisions=0)
    assert m0.vertices.shape == (5, 3) and m0.triangles.shape == (3, 3)   # vertex 0 split at the seam
    m1 = render_mesh(v, f[:2], ObjTexture(tex.uv, tex.face_uv[:2], tex.image, tex.path), subdivisions=1)
    assert m1.triangles.shape == (8, 3) and m1.vertices.shape == (9, 3)
    # the centre of the quad (a new vertex) takes the texture at the mean of the diagonal's coordinates
    centre = np.flatnonzero(np.all(np.isclose(m1.vertices, [0.5, 0.5, 0]), 1))
    assert centre.size == 1
    np.testing.assert_allclose(m1.colors[centre[0]], sample_texture(tex.image, [[0.5, 0.5]])[0])
    with pytest.raises(ValueError, match="corner for corner"):
        render_mesh(v, f[:2], tex)


# ----------------------------------------------------------------------------- the pipeline
@pytest.fixture(scope="module")
def ict():
    from disentangled_face.shape import load_ict_facekit

    return load_ict_facekit()


class _ProjectingDetector:
    """Stands in for a 68-point detector: the scan's projected landmarks, shifted by 1 pixel."""

    backend = "test"

    def __init__(self, renders):
        self.points = iter(renders.landmarks2d + 1.0)

    def detect(self, image):
        from disentangled_face.data.landmarks import Detection

        return Detection(True, next(self.points), (0, 0, 1, 1), 1.0, "test", 1, 0)


def test_scan_section_pipeline_on_a_textured_model_face(ict):
    """A 'scan' that is a model face: rendered with its texture, the fits of its projected
    landmarks come closer to it than the mean face does."""
    from disentangled_face.config import FittingConfig
    from disentangled_face.data.render import RendererUnavailableError
    from disentangled_face.data.scan_texture import RenderMesh
    from disentangled_face.evaluation.scan_fits import render_scan, scan_distance_map, scan_fit_experiment

    ict = ict.subset(n_id=8, n_exp=4)
    alpha = np.zeros(ict.n_id)
    alpha[:4] = [2.0, -1.5, 1.0, 1.5]
    truth = np.asarray(ict.identity_shape(alpha), np.float64)
    scan = Scan3D(truth, ict.triangles, np.asarray(ict.landmarks_of(truth), np.float64), "synthetic")
    x = truth[:, 0]
    colors = np.stack([(x - x.min()) / np.ptp(x), np.full(len(x), 0.3), np.full(len(x), 0.3)], -1)
    mesh = RenderMesh(truth, ict.triangles, colors)                  # red grows to the face's +x side
    try:
        r = render_scan(scan, mesh, ict, yaws_deg=(0.0, 30.0), size=(112, 96), scale=0.45)
    except RendererUnavailableError as exc:
        pytest.skip(f"no OpenGL: {exc}")
    assert r.images.shape == (2, 112, 96, 3) and r.mask[0].mean() > 0.3
    on = r.mask[0]
    red_right = r.images[0, :, 48:, 0][on[:, 48:]].mean()
    red_left = r.images[0, :, :48, 0][on[:, :48]].mean()
    assert red_right > red_left + 40                                # +x is the image's right at yaw 0
    np.testing.assert_allclose(r.landmarks2d[0].mean(0), [48, 56], atol=1e-6)   # centred
    opts = FittingConfig(max_iter=3, joint_iters=0, dtype="float64")
    res = scan_fit_experiment(ict, scan, r, opts, _ProjectingDetector(r), correspondences=("nearest",))
    t = res.table(correspondence="nearest")
    assert list(t.columns) == ["0", "30", "overall"]
    assert t.loc["mean face", "overall"] > 1.0
    assert t.loc["multi-image fit (projected)", "overall"] < 0.5 * t.loc["mean face", "overall"]
    np.testing.assert_allclose(res.detector_rmse_px, np.sqrt(2.0))
    d, keep = scan_distance_map(ict, truth, scan)
    assert keep.any() and np.abs(d).max() < 1e-6                      # the truth itself: no distance
    assert res.landmark_table().loc["multi-image fit (projected)", "overall"] < \
        res.landmark_table().loc["mean face", "overall"]

"""The ICT-FaceKit fetcher: local archives, hash checks, safe extraction, clear errors."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
import scipy.io

from disentangled_face.shape import ict_facekit as fetch
from disentangled_face.shape import load_bfm2009


def _tar(path, members: dict[str, bytes], top="ICT-FaceKit-x", extra=None):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra or []:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_safe_extract_and_verify(tmp_path):
    files = {"FaceXModel/a.obj": b"v 0 0 0\n", "LICENSE": b"MIT"}
    arc = _tar(tmp_path / "a.tar.gz", files)
    out = fetch.safe_extract(arc, tmp_path / "x", wanted={"FaceXModel/a.obj", "LICENSE"})
    assert out["LICENSE"].read_bytes() == b"MIT"
    sums = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    fetch.verify(out, sums)  # no error
    sums["LICENSE"] = "0" * 64
    with pytest.raises(fetch.HashMismatchError, match="LICENSE"):
        fetch.verify(out, sums)
    with pytest.raises(fetch.HashMismatchError, match="missing"):
        fetch.verify({}, sums)


def test_path_traversal_member_refused(tmp_path):
    evil = tarfile.TarInfo("../../evil.txt")
    evil.size = 4
    arc = _tar(tmp_path / "evil.tar.gz", {"LICENSE": b"MIT"}, extra=[(evil, b"boom")])
    with pytest.raises(tarfile.FilterError):
        fetch.safe_extract(arc, tmp_path / "x")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_symlink_escaping_refused(tmp_path):
    link = tarfile.TarInfo("top/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    arc = _tar(tmp_path / "link.tar.gz", {}, extra=[(link, None)])
    with pytest.raises(tarfile.FilterError):
        fetch.safe_extract(arc, tmp_path / "x")


def test_pinned_sums_cover_the_model():
    sums = fetch.pinned_sha256()
    assert "FaceXModel/generic_neutral_mesh.obj" in sums and "FaceXModel/vertex_indices.json" in sums
    assert sum(k.startswith("FaceXModel/identity") for k in sums) == 100
    assert all(len(v) == 64 for v in sums.values())


def test_missing_model_message_names_url_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DISENTANGLED_FACE_DATA", str(tmp_path))
    monkeypatch.delenv(fetch.ARCHIVE_ENV, raising=False)
    with pytest.raises(fetch.ModelNotFoundError) as err:
        fetch.fetch_ict_facekit(allow_download=False)
    msg = str(err.value)
    assert fetch.ICT_URL in msg and fetch.ARCHIVE_ENV in msg
    monkeypatch.setenv(fetch.ARCHIVE_ENV, str(tmp_path / "nope.tar.gz"))
    with pytest.raises(fetch.ModelNotFoundError, match="nope.tar.gz"):
        fetch.fetch_ict_facekit()


def test_download_failure_is_a_clear_error(tmp_path):
    # an unreachable URL (port 9 on loopback: nothing listens) fails fast and names the variable
    with pytest.raises(fetch.ModelNotFoundError, match=fetch.ARCHIVE_ENV):
        fetch.download("http://127.0.0.1:9/x.tar.gz", tmp_path / "x.tar.gz", progress=False, timeout=2)
    assert not (tmp_path / "x.tar.gz").exists()


def test_local_archive_works_offline():
    """The cache the test session uses was made from the local archive (no network here)."""
    path = fetch.fetch_ict_facekit(allow_download=False)
    with np.load(path) as z:
        assert z["mean"].shape == (9409, 3)
        assert z["id_basis"].shape == (100, 9409, 3)
        assert z["exp_basis"].shape == (53, 9409, 3)
        assert str(z["commit"]) == fetch.ICT_COMMIT


def test_triangulate_quads():
    tris = fetch.triangulate([[0, 1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(tris, [[0, 1, 2], [0, 2, 3], [4, 5, 6]])


def test_obj_vertex_reader_matches_trimesh(tmp_path):
    """The fast reader returns the OBJ's own ``v`` lines, which trimesh puts first (it appends
    the texture seams' duplicates after them)."""
    import trimesh

    obj = tmp_path / "quad.obj"
    obj.write_text("# a quad with a texture seam\nv 0 0 0\nv 1.5 0 0\nv 1.5 2 0\nv 0 2 -0.25\n"
                   "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvt 0.5 0.5\nf 1/1 2/2 3/3\nf 1/5 3/3 4/4\n")
    got = fetch._read_obj_vertices(obj)
    ref = np.asarray(trimesh.load(obj, process=False, maintain_order=True, force="mesh").vertices)
    assert got.shape == (4, 3)
    np.testing.assert_array_equal(got, ref[:4])
    np.testing.assert_array_equal(got[3], [0, 2, -0.25])


@pytest.mark.parametrize("text", ["f 1 2 3\n", "v 0 0\nv 1 1 1\n"])
def test_obj_vertex_reader_rejects_bad_files(tmp_path, text):
    obj = tmp_path / "bad.obj"
    obj.write_text(text)
    with pytest.raises(ValueError, match="vertex lines"):
        fetch._read_obj_vertices(obj)


def test_bfm2009_loader_on_tiny_mat(tmp_path):
    """A tiny file in the layout of 01_MorphableModel.mat (micrometres, 1-based triangles)."""
    n, k_id, k_exp = 80, 4, 2
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(3 * n, 1)) * 5e4
    pc = np.linalg.qr(rng.normal(size=(3 * n, k_id)))[0]
    ev = np.array([[4e3], [3e3], [2e3], [1e3]])
    tl = np.array([[1, 2, 3], [2, 3, 4], [78, 79, 80]])
    scipy.io.savemat(tmp_path / "01_MorphableModel.mat", {"shapeMU": mu, "shapePC": pc, "shapeEV": ev, "tl": tl})
    w_exp = rng.normal(size=(3 * n, k_exp))
    scipy.io.savemat(tmp_path / "exp.mat", {"w_exp": w_exp, "sigma_exp": np.array([[2.0], [1.0]])})
    lm = np.arange(1, 69)  # 1-based
    m = load_bfm2009(tmp_path / "01_MorphableModel.mat", tmp_path / "exp.mat", lm, landmarks_one_based=True)
    assert (m.n_vertices, m.n_id, m.n_exp) == (n, k_id, k_exp)
    np.testing.assert_allclose(m.mean.reshape(-1), mu[:, 0] * 1e-3, rtol=1e-5)  # um -> mm
    np.testing.assert_array_equal(m.triangles[0], [0, 1, 2])
    np.testing.assert_array_equal(m.landmarks, np.arange(68))
    # alpha_id = e_0 moves the mean by the first PC times its standard deviation (in mm)
    a = np.zeros(k_id)
    a[0] = 1
    np.testing.assert_allclose(m.shape(a).reshape(-1) - m.s_mean, pc[:, 0] * 4e3 * 1e-3, rtol=1e-4, atol=1e-6)
    assert m.exp_bounds is None
    with pytest.raises(KeyError, match="shapeEV"):
        scipy.io.savemat(tmp_path / "bad.mat", {"shapeMU": mu, "shapePC": pc, "tl": tl})
        load_bfm2009(tmp_path / "bad.mat", tmp_path / "exp.mat", lm)
    with pytest.raises(FileNotFoundError, match="01_MorphableModel"):
        load_bfm2009(tmp_path / "missing.mat", tmp_path / "exp.mat", lm)

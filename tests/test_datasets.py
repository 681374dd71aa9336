"""Real-dataset loaders on tiny files written in each dataset's own layout, and the torch Dataset."""

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from disentangled_face import data
from disentangled_face.config import load_config
from disentangled_face.data import loaders as datasets
from disentangled_face.data import landmarks as data_landmarks
from disentangled_face.data import DatasetFormatError, FaceImageDataset


def write_jpg(path, value, size=(60, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[0], size[1], 3), value, np.uint8)).save(path, quality=95)


# ----------------------------------------------------------------------------- CASIA-WebFace
def test_casia_webface(tmp_path):
    for s, n in (("0000045", 3), ("0000099", 2), ("0000100", 0)):
        (tmp_path / s).mkdir()
        for k in range(n):
            write_jpg(tmp_path / s / f"{k + 1:03d}.jpg", 40 * k)
    samples = datasets.load_casia_webface(tmp_path)
    assert [s.label for s in samples] == [0, 0, 0, 1, 1]  # the empty folder is skipped
    assert [s.subject for s in samples][:3] == ["0000045"] * 3
    assert samples[1].load_image().shape == (60, 50, 3)
    assert abs(int(samples[1].load_image().mean()) - 40) <= 2
    assert len(datasets.load_casia_webface(tmp_path, max_subjects=1)) == 3
    assert len(datasets.load_casia_webface(tmp_path, min_images_per_subject=3)) == 3
    with pytest.raises(DatasetFormatError, match="folder not found.*CASIA"):
        datasets.load_casia_webface(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetFormatError, match="no subject folder"):
        datasets.load_casia_webface(empty)


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "s" / "x.jpg"
    bad.parent.mkdir()
    bad.write_text("not a jpeg")
    with pytest.raises(DatasetFormatError, match="x.jpg: not a readable image"):
        datasets.load_casia_webface(tmp_path)[0].load_image()


# ----------------------------------------------------------------------------- LFW
def make_lfw(root, folds=2, sep=" "):
    people = {"Ann_A": 3, "Bob_B": 2, "Cid_C": 1}
    for name, n in people.items():
        for k in range(1, n + 1):
            write_jpg(root / "lfw" / name / f"{name}_{k:04d}.jpg", 30 * k, size=(250, 250))
    lines = [f"{folds}{sep}1"]
    for f in range(folds):
        lines.append(sep.join(["Ann_A", "1", str(2 + f % 2)]))
        lines.append(sep.join(["Bob_B", "1", "Cid_C", "1"]))
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return people


def test_lfw_pairs(tmp_path):
    make_lfw(tmp_path)
    samples, pairs = datasets.load_lfw_pairs(tmp_path)
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]
    names = [(samples[p.a].subject, samples[p.b].subject) for p in pairs]
    assert names == [("Ann_A", "Ann_A"), ("Bob_B", "Cid_C"), ("Ann_A", "Ann_A"), ("Bob_B", "Cid_C")]
    # images are shared between pairs: Ann_A_0001, 0002, 0003, Bob_B_0001, Cid_C_0001
    assert len(samples) == 5
    assert str(samples[pairs[2].b].image).endswith("Ann_A_0003.jpg")
    assert samples[pairs[0].a].label == samples[pairs[0].b].label != samples[pairs[1].b].label


def test_lfw_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetFormatError, match="pairs.txt"):
        datasets.load_lfw_pairs(tmp_path)
    make_lfw(tmp_path)
    (tmp_path / "pairs.txt").write_text("1 1\nAnn_A 1\nBob_B 1 Cid_C 1\n")
    with pytest.raises(DatasetFormatError, match=r"pairs.txt:2: expected 'name n1 n2'"):
        datasets.load_lfw_pairs(tmp_path)
    (tmp_path / "pairs.txt").write_text("1 1\nAnn_A 1 9\nBob_B 1 Cid_C 1\n")
    with pytest.raises(DatasetFormatError, match=r"Ann_A_0009.jpg"):
        datasets.load_lfw_pairs(tmp_path)
    (tmp_path / "pairs.txt").write_text("1 1\nAnn_A 1 2\n")
    with pytest.raises(DatasetFormatError, match="expected 2 pair lines"):
        datasets.load_lfw_pairs(tmp_path)


def test_lfw_through_scikit_learn(tmp_path):
    lfw_home = tmp_path / "lfw_home"
    make_lfw(lfw_home, folds=10, sep="\t")
    (lfw_home / "lfw").rename(lfw_home / "lfw_funneled")
    for extra in ("pairsDevTrain.txt", "pairsDevTest.txt"):
        (lfw_home / extra).write_text("1\nAnn_A\t1\t2\n")
    samples, pairs = datasets.load_lfw_pairs_sklearn(tmp_path)
    assert len(pairs) == 20 and len(samples) == 40
    assert [p.same for p in pairs[:2]] == [True, False]
    assert [p.fold for p in pairs[::2]] == list(range(10))
    img = samples[0].load_image()
    assert img.dtype == np.uint8 and img.ndim == 3
    with pytest.raises(DatasetFormatError, match="scikit-learn's LFW files not found"):
        datasets.load_lfw_pairs_sklearn(tmp_path / "nothing")


# ----------------------------------------------------------------------------- YTF
def test_youtube_faces(tmp_path):
    db = tmp_path / "frame_images_DB"
    for name, vids in (("Ann_A", (0, 1)), ("Bob_B", (3,))):
        for v in vids:
            for k in range(4):
                write_jpg(db / name / str(v) / f"{k}.{100 + k}.jpg", 10 * k)
    (tmp_path / "splits.txt").write_text(
        "split number, first name, second name, first length, second length, is same\n"
        "1, Ann_A/0, Ann_A/1, 4, 4, 1\n"
        "2, Ann_A/1, Bob_B/3, 4, 4, 0\n")
    samples, pairs, videos = datasets.load_ytf(tmp_path, max_frames_per_video=3)
    assert videos == ["Ann_A/0", "Ann_A/1", "Bob_B/3"]
    assert [(p.a, p.b, p.same, p.fold, p.kind) for p in pairs] == [(0, 1, True, 0, "sequence"),
                                                                   (1, 2, False, 1, "sequence")]
    assert len(samples) == 9 and {s.sequence for s in samples} == {0, 1, 2}
    assert [s.label for s in samples if s.sequence == 2] == [1, 1, 1]
    (tmp_path / "splits.txt").write_text("header\n1, Ann_A/0, Zed_Z/0, 4, 4, 0\n")
    with pytest.raises(DatasetFormatError, match=r"Zed_Z/0.*frames of a YTF video"):
        datasets.load_ytf(tmp_path)
    (tmp_path / "splits.txt").write_text("header\n1, Ann_A, Ann_A/1, 4, 4, 1\n")
    with pytest.raises(DatasetFormatError, match=r"splits.txt:2: video 'Ann_A'"):
        datasets.load_ytf(tmp_path)


# ----------------------------------------------------------------------------- BU-3DFE, MICC
def write_mesh(path, shift=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = trimesh.creation.box(extents=(10, 20, 30))
    m.vertices += shift
    m.export(path)
    return m


def test_bu3dfe(tmp_path):
    sub = tmp_path / "F0001"
    box = write_mesh(sub / "F0001_NE00WH_F3D.obj")
    write_mesh(sub / "F0001_HA03WH_F3D.obj", shift=1.0)
    (sub / "F0001_HA03WH_F3D.bnd").write_text("\n".join(f"{i} {i}.5 {2 * i} {3 * i}" for i in range(83)))
    scans = datasets.load_bu3dfe(tmp_path)
    assert [(s.expression, s.intensity) for s in scans] == [("happiness", 0.75), ("neutral", 0.0)]
    np.testing.assert_allclose(scans[1].vertices, box.vertices)
    assert scans[1].landmarks is None
    assert scans[0].landmarks.shape == (83, 3)
    np.testing.assert_allclose(scans[0].landmarks[2], [2.5, 4, 6])
    (sub / "F0001_HA03WH_F3D.bnd").write_text("1 2 3 4\n5 six 7 8\n")
    with pytest.raises(DatasetFormatError, match=r"F3D.bnd:2: expected"):
        datasets.load_bu3dfe(tmp_path)
    (sub / "F0001_HA03WH_F3D.bnd").unlink()
    write_mesh(sub / "scan.obj")
    with pytest.raises(DatasetFormatError, match=r"scan.obj: name does not follow BU-3DFE"):
        datasets.load_bu3dfe(tmp_path)


def test_micc(tmp_path):
    obj = tmp_path / "subject_01" / "Model" / "frontal1" / "obj" / "110920150452.obj"
    write_mesh(obj)
    obj.with_suffix(".txt").write_text("1 2 3\n4 5 6\n")
    write_mesh(tmp_path / "subject_02" / "Model" / "frontal2" / "obj" / "x.obj")
    scans = datasets.load_micc(tmp_path)
    assert [s.subject for s in scans] == ["subject_01", "subject_02"]
    np.testing.assert_allclose(scans[0].landmarks, [[1, 2, 3], [4, 5, 6]])
    assert scans[1].landmarks is None and scans[1].triangles.shape[1] == 3
    (tmp_path / "subject_03").mkdir()
    (tmp_path / "subject_03" / "bad.obj").write_text("this is not a mesh\n")
    with pytest.raises(DatasetFormatError, match="bad.obj"):
        datasets.load_micc(tmp_path)
    with pytest.raises(DatasetFormatError, match="no subject_XX folder"):
        datasets.load_micc(tmp_path / "subject_01")


# ----------------------------------------------------------------------------- torch Dataset
@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    from disentangled_face.shape import load_ict_facekit

    cfg = load_config("book", {"synth.seed": 3, "synth.batch": 8,
                               "synth.protocols": {"train": {"subjects": 3, "images_per_subject": 4}}})
    path = tmp_path_factory.mktemp("ds") / "train.h5"
    return data.build_protocol("train", cfg.synth, model=load_ict_facekit(), progress=False, path=path)


def test_network_input_range():
    x = datasets.to_network_input(np.array([[[0, 128, 255]]], np.uint8))
    assert x.shape == (3, 1, 1)
    np.testing.assert_allclose(x.ravel(), [-127.5 / 128, 0.5 / 128, 127.5 / 128])


def test_face_image_dataset_items(tiny_set):
    s = data.load_protocol(tiny_set)
    ds = FaceImageDataset(tiny_set, indices=[5, 0, 11])
    assert len(ds) == 3
    item = ds[0]
    assert item["image"].shape == (3, 112, 96) and item["image"].dtype == torch.float32
    assert -1.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["index"] == 5 and item["label"].dtype == torch.int64 and int(item["label"]) == s.label[5]
    np.testing.assert_allclose(item["image"].numpy(), datasets.to_network_input(s.images[5]))
    np.testing.assert_array_equal(item["alpha_id"].numpy(), s.alpha_id[5])
    np.testing.assert_array_equal(item["landmarks"].numpy(), s.landmarks[5])
    with pytest.raises(ValueError, match="indices must lie"):
        FaceImageDataset(tiny_set, indices=[12])


def test_face_image_dataset_with_worker_processes(tiny_set):
    ds = FaceImageDataset(data.load_protocol(tiny_set))
    ds[0]  # opens the file in this process; workers must reopen it
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == 12
    images = torch.cat([b["image"] for b in batches])
    np.testing.assert_allclose(images.numpy(), np.stack([ds[i]["image"].numpy() for i in range(12)]))


def test_face_image_dataset_over_real_samples(tmp_path):
    (tmp_path / "a").mkdir()
    write_jpg(tmp_path / "a" / "1.jpg", 255, size=(250, 250))
    ds = FaceImageDataset(datasets.load_casia_webface(tmp_path))
    item = ds[0]
    assert item["image"].shape == (3, 112, 96)
    assert float(item["image"].min()) > 0.99  # white image -> 127.5 / 128
    assert torch.isnan(item["landmarks"]).all() and item["alpha_id"].numel() == 0


def test_synthetic_samples_use_the_same_records(tiny_set):
    s = data.load_protocol(tiny_set)
    rec = s.sample(2)
    assert isinstance(rec, data.FaceSample)
    assert rec.load_image().shape == (112, 96, 3) and rec.label == s.label[2]
    assert rec.yaw == pytest.approx(float(s.yaw[2]))


# ----------------------------------------------------------------------------- one scan
SEAM_OBJ = """# a quad split in two triangles whose texture has a seam: 4 vertices, 6 texture coordinates
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0.5 0.5
vt 0.2 0.9
vt 0.1 0.1
f 1/1 2/2 3/3
f 1/6 3/4 4/5
"""


def test_obj_keeps_vertex_order_and_count_at_texture_seams(tmp_path):
    p = tmp_path / "seam.obj"
    p.write_text(SEAM_OBJ)
    v, f = data.read_mesh(p)
    np.testing.assert_array_equal(v, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3]])
    # trimesh, even with process=False, splits the seam vertices (what the loader avoids)
    assert len(trimesh.load(p, process=False).vertices) > 4
    # polygons become triangle fans; negative indices count back from the last vertex
    q = tmp_path / "poly.obj"
    q.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf -4 -3 -2 -1\n")
    np.testing.assert_array_equal(data.read_mesh(q)[1], [[0, 1, 2], [0, 2, 3]])
    q.write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    with pytest.raises(DatasetFormatError, match="outside"):
        data.read_mesh(q)


def _strip_obj(n_cols=2131, n_rows=3, seed=0):
    """An OBJ of n_rows x n_cols = 6,393 vertices (by default) listed in a shuffled order, whose
    triangles each carry their own texture coordinates (a seam along every edge)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(n_cols, dtype=float), np.arange(n_rows, dtype=float)), -1).reshape(-1, 2)
    v = np.column_stack([grid, rng.normal(0, 0.1, len(grid))])
    perm = rng.permutation(len(v))                    # file order differs from the grid order
    where = np.argsort(perm)                          # grid index -> file index
    tris = []
    for r in range(n_rows - 1):
        for c in range(n_cols - 1):
            a, b, d, e = r * n_cols + c, r * n_cols + c + 1, (r + 1) * n_cols + c, (r + 1) * n_cols + c + 1
            tris += [[a, b, e], [a, e, d]]
    tris = where[np.asarray(tris)]
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v[perm]]
    lines += [f"vt {u:.4f} {w:.4f}" for u, w in rng.random((3 * len(tris), 2))]
    lines += [f"f {t[0] + 1}/{3 * k + 1} {t[1] + 1}/{3 * k + 2} {t[2] + 1}/{3 * k + 3}" for k, t in enumerate(tris)]
    return "\n".join(lines) + "\n", v[perm], tris


def test_a_6393_vertex_obj_with_seams_keeps_its_count_and_order(tmp_path):
    text, v, tris = _strip_obj()
    p = tmp_path / "scan.obj"
    p.write_text(text)
    assert len(v) == 6393
    got_v, got_f = data.read_mesh(p)
    assert got_v.shape == (6393, 3)
    np.testing.assert_allclose(got_v, v, atol=1e-6)               # the file's order
    np.testing.assert_array_equal(got_f, tris)
    # what trimesh alone does with that file: vertices split at the seams, order lost
    assert len(trimesh.load(p, process=False).vertices) != 6393
    s = data.load_scan(p, units="mm")
    assert s.vertices.shape == (6393, 3) and s.landmarks is None and (s.units, s.scale_to_mm) == ("mm", 1.0)
    # without landmarks the units are guessed from the extent (2,130 mm wide: fits no unit)
    assert data.load_scan(p).units == "unknown"


@pytest.mark.parametrize("ext", [".obj", ".ply"])
def test_write_mesh_round_trip_keeps_vertex_order_and_count(tmp_path, ext):
    text, v, tris = _strip_obj(n_cols=200)
    out = data.write_mesh(tmp_path / f"out{ext}", v, tris)
    assert out == tmp_path / f"out{ext}" and not list(tmp_path.glob(".*part"))   # atomic: no leftover
    got_v, got_f = data.read_mesh(out)
    assert got_v.shape == v.shape
    np.testing.assert_allclose(got_v, v, atol=1e-9)
    np.testing.assert_array_equal(got_f, tris)
    with pytest.raises(ValueError, match="writes"):
        data.write_mesh(tmp_path / "out.stl", v, tris)
    with pytest.raises(ValueError, match="outside"):
        data.write_mesh(tmp_path / f"bad{ext}", v, tris + len(v))
    assert not (tmp_path / f"bad{ext}").exists()


def test_export_shape_of_a_model_and_of_a_fit(tmp_path):
    from disentangled_face.shape import MorphableModel

    m = MorphableModel.toy(n=150, k_id=6, k_exp=3, seed=3)
    shapes = m.shape(*m.sample(2, rng=0))                        # (2, n, 3) mm

    class Fit:                                                    # anything with .shapes(model)
        def shapes(self, model):
            return shapes

    for src, k in ((shapes[1], 0), (shapes, 1), (Fit(), 1)):
        p = data.export_shape(tmp_path / "s.obj", src, m, index=k)
        v, f = data.read_mesh(p)
        np.testing.assert_allclose(v, shapes[1], atol=1e-6)
        np.testing.assert_array_equal(f, m.triangles)
    with pytest.raises(ValueError, match="n=150"):
        data.export_shape(tmp_path / "s.ply", shapes[0][:10], m)


@pytest.fixture(scope="module")
def face68():
    from disentangled_face.shape import load_ict_facekit

    m = load_ict_facekit()
    return m, np.asarray(m.landmarks_of(m.mean), np.float64)


def _write_scan(tmp_path, m, scale=1.0, ext=".ply"):
    mesh = tmp_path / f"scan{ext}"
    trimesh.Trimesh(m.mean * scale, m.triangles, process=False).export(mesh)
    return mesh


def _write_landmarks(path, pts):
    ext = path.suffix
    if ext == ".npy":
        np.save(path, pts)
    elif ext == ".txt":
        path.write_text("\n".join(" ".join(f"{c:.6f}" for c in p) for p in pts))
    elif ext == ".pts":
        path.write_text("version: 1\nn_points: 68\n{\n" + "\n".join(" ".join(f"{c:.6f}" for c in p) for p in pts)
                        + "\n}\n")
    return path


@pytest.mark.parametrize("ext", [".pts", ".txt", ".npy"])
def test_load_scan_with_landmark_files(tmp_path, face68, ext):
    m, L = face68
    mesh = _write_scan(tmp_path, m)
    _write_landmarks(mesh.with_suffix(ext), L)
    s = data.load_scan(mesh)                        # the landmark file found by the mesh's stem
    assert s.vertices.shape == m.mean.shape and s.triangles.shape == m.triangles.shape
    np.testing.assert_allclose(s.vertices, m.mean, atol=1e-4)           # order and count kept
    np.testing.assert_allclose(s.landmarks, L, atol=1e-5)
    assert (s.units, s.scale_to_mm) == ("mm", 1.0) and s.subject == "scan"


def test_load_scan_reports_and_converts_units(tmp_path, face68):
    m, L = face68
    mesh = _write_scan(tmp_path, m, scale=0.001)                         # metres
    _write_landmarks(tmp_path / "lm.npy", L * 0.001)
    s = data.load_scan(mesh, tmp_path / "lm.npy")
    assert (s.units, s.scale_to_mm) == ("m", 1000.0)
    np.testing.assert_allclose(s.landmarks, L, rtol=1e-9)
    np.testing.assert_allclose(s.vertices, m.mean, atol=1e-3)
    assert data.load_scan(mesh, tmp_path / "lm.npy", units="m").units == "m"
    odd = data.load_scan(mesh, tmp_path / "lm.npy", units="mm", check_order=False)
    assert odd.units == "mm" and odd.scale_to_mm == 1.0
    _write_landmarks(tmp_path / "tiny.npy", L * 1e-5)                     # fits no unit
    assert data.load_scan(mesh, tmp_path / "tiny.npy", check_order=False).units == "unknown"
    with pytest.raises(DatasetFormatError, match="units"):
        data.load_scan(mesh, units="inch")


def test_ljson_grouped_by_label_is_put_in_ibug_order(tmp_path, face68):
    """menpo's .ljson (as menpo3d's james.ljson) lists points group by group, not in iBUG order."""
    import json

    m, L = face68
    groups = [("chin", 0, 17), ("leye", 36, 42), ("reye", 42, 48), ("leyebrow", 17, 22), ("nose", 27, 36),
              ("reyebrow", 22, 27), ("mouth", 48, 68)]
    order = np.concatenate([np.arange(a, b) for _, a, b in groups])
    labels, k = [], 0
    for name, a, b in groups:
        labels.append({"label": name, "mask": list(range(k, k + b - a))})
        k += b - a
    doc = {"groups": {"LJSON": {"labels": labels, "landmarks": {"points": L[order].tolist(), "connectivity": []}}},
           "version": 3}
    p = tmp_path / "scan.ljson"
    p.write_text(json.dumps(doc))
    np.testing.assert_allclose(data.read_landmarks(p), L)
    mesh = _write_scan(tmp_path, m)
    np.testing.assert_allclose(data.load_scan(mesh).landmarks, L)
    # the same points without labels stay in file order, which the order check refuses
    doc["groups"]["LJSON"]["labels"] = []
    p.write_text(json.dumps(doc))
    with pytest.raises(data_landmarks.LandmarkOrderError, match="iBUG"):
        data.load_scan(mesh)


def test_scan_landmark_order_is_checked(tmp_path, face68):
    from disentangled_face.data.landmarks import IBUG_MIRROR

    m, L = face68
    mesh = _write_scan(tmp_path, m)
    rng = np.random.default_rng(0)
    noisy = L + rng.normal(0, 1.5, L.shape)                               # a real scan's imprecision
    data_landmarks.check_landmark_order_3d(noisy)
    swapped = noisy.copy()
    swapped[[36, 45]] = swapped[[45, 36]]
    cases = [(noisy[IBUG_MIRROR], "mirrored"), (noisy * [-1, 1, 1], "mirrored"),
             (swapped, "landmarks 36 and 45 look exchanged"), (noisy[rng.permutation(68)], "do not look like")]
    for pts, msg in cases:
        _write_landmarks(tmp_path / "scan.npy", pts)
        with pytest.raises(ValueError, match=msg):
            data.load_scan(mesh)
    s = data.load_scan(mesh, check_order=False)
    assert s.landmarks.shape == (68, 3)
    _write_landmarks(tmp_path / "scan.npy", L[:, :2])
    with pytest.raises(DatasetFormatError, match="3D"):
        data.load_scan(mesh)

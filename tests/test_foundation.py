"""Config profiles, data paths, atomic writes and the plotting helpers."""

import json

import numpy as np
import pytest

from disentangled_face import plotting as viz
from disentangled_face.config import SECTIONS, ConfigError, load_config, with_overrides
from disentangled_face.paths import atomic_path, config_hash, data_dir
from disentangled_face.shape import MorphableModel, load_ict_facekit


def test_profiles_load_with_every_section():
    for name in ("book", "paper"):
        cfg = load_config(name)
        assert cfg.profile == name
        assert {"model", "synth", "fitting", "network", "train", "experiments"} <= set(cfg.to_dict())
        assert set(SECTIONS) <= set(cfg.to_dict())


def test_bad_profiles_raise(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config("laptop")
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("trainer: {}\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(bad)


def test_unknown_keys_raise_with_their_path(tmp_path):
    with pytest.raises(ConfigError, match=r"synth\.sed: unknown key; expected one of \[.*'seed'"):
        load_config("book", {"synth.sed": 1})
    with pytest.raises(ConfigError, match=r"synth\.pose\.yaw_sdt_deg: unknown key"):
        load_config("book", {"synth.pose.yaw_sdt_deg": 30.0})
    with pytest.raises(ConfigError, match=r"synth\.protocols\.casia: unknown key"):
        load_config("book", {"synth.protocols.casia": {"subjects": 3}})
    bad = tmp_path / "typo.yaml"
    bad.write_text("model: {name: ict-facekit}\nsynth:\n  sed: 1\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: synth\.sed: unknown key"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"synth\.sed: unknown key"):
        with_overrides(load_config("book"), {"synth.sed": 1})


def test_wrong_types_raise_with_their_path():
    with pytest.raises(ConfigError, match=r"synth\.seed: .*got '7'"):
        load_config("book", {"synth.seed": "7"})
    with pytest.raises(ConfigError, match=r"synth\.protocols\.train\.subjects: "):
        load_config("book", {"synth.protocols.train.subjects": 2.5})
    with pytest.raises(ConfigError, match=r"synth\.light\.ambient: "):
        load_config("book", {"synth.light.ambient": 0.3})
    with pytest.raises(ConfigError, match=r"synth\.batch: .*greater than or equal to 1"):
        load_config("book", {"synth.batch": 0})
    with pytest.raises(ConfigError, match=r"model\.name: "):
        load_config("book", {"model.name": "bfm2009"})


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "cache.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps({"ok": 1}))
    assert json.loads(target.read_text()) == {"ok": 1}
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_path_files_get_the_usual_mode(tmp_path, umask, mode):
    import os
    import stat

    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "cache.npz") as tmp:
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o600       # mkstemp's, while being written
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cache.npz").stat().st_mode) == mode


def test_data_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DISENTANGLED_FACE_DATA", str(tmp_path / "d"))
    assert data_dir("synth") == tmp_path / "d" / "synth" and (tmp_path / "d" / "synth").is_dir()


def test_display_mesh_is_a_vertex_subset():
    m = load_ict_facekit()
    idx, tris = viz.display_mesh(m.mean, m.triangles, max_faces=3000)
    assert len(tris) <= 3000 and tris.max() < len(idx) and np.all(np.diff(idx) > 0)
    assert idx.max() < m.n_vertices
    # no degenerate triangles remain
    assert np.all((tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2]))
    # small meshes are drawn as they are
    toy = MorphableModel.toy(n=20)
    idx2, tris2 = viz.display_mesh(toy.mean, toy.triangles)
    np.testing.assert_array_equal(idx2, np.arange(20))


def test_mesh_grid_uses_one_scene_and_checks_lengths():
    toy = MorphableModel.toy(n=30)
    fig = viz.mesh_grid([toy.mean, toy.mean + 1], toy.triangles, ["a", "b"], [None, np.arange(30.0)])
    assert len(fig.data) == 2
    assert fig.layout.scene is not None and "scene2" not in fig.layout
    assert [a.text for a in fig.layout.scene.annotations] == ["a", "b"]
    with pytest.raises(ValueError, match="titles must have 2"):
        viz.mesh_grid([toy.mean, toy.mean], toy.triangles, ["a"])
    with pytest.raises(ValueError, match="intensity must have 30"):
        viz.mesh_trace(toy.mean, toy.triangles, intensity=np.zeros(5))


def test_morph_slider_has_one_step_per_frame():
    toy = MorphableModel.toy(n=30)
    fig = viz.morph_slider_figure([("a", toy.mean), ("b", toy.mean * 2)], toy.triangles)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["a", "b"]
    np.testing.assert_allclose(steps[1].args[0]["x"][0], np.round(toy.mean[:, 0] * 2, 1))
    with pytest.raises(ValueError, match="at least one"):
        viz.morph_slider_figure([], toy.triangles)


def test_static_build_flag(monkeypatch):
    monkeypatch.delenv(viz.STATIC_ENV, raising=False)
    assert not viz.is_static_build()
    monkeypatch.setenv(viz.STATIC_ENV, "1")
    assert viz.is_static_build()

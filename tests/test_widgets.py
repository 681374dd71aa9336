"""The live widgets' callbacks: slider values redraw the figure (ipywidgets driven without a
browser); full slider labels; a colour range fixed across the λ_R sweep."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ipywidgets")

from disentangled_face.plotting import training as training_plots  # noqa: E402
from disentangled_face.plotting import widgets  # noqa: E402
from disentangled_face.shape import load_ict_facekit  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    """The figures the widgets display (instead of printing them outside a kernel)."""
    figs = []
    monkeypatch.setattr(widgets, "show", figs.append)
    return figs


def _xyz(fig):
    t = fig.data[0]
    return np.stack([np.asarray(t.x), np.asarray(t.y), np.asarray(t.z)], 1)


def test_shape_explorer_sliders_redraw_the_mesh(shown):
    model = load_ict_facekit()
    names = ["jawOpen", "mouthSmile_L", "mouthSmile_R", "eyeBlink_L"]
    box = widgets.shape_explorer_widget(model, n_id=2, expressions=names)
    assert list(box.sliders) == ["α_id[1]", "α_id[2]", *names]           # full names, no "mouthSmi…"
    width = {s.style.description_width for s in box.sliders.values()}
    assert width == {widgets.description_width(list(box.sliders))}      # one width, fits the longest
    assert int(width.pop()[:-2]) >= 94        # mouthSmile_R took 94 px in JupyterLab 4.6 (13 px font)
    controls = box.children[0]
    assert controls.layout.flex == "0 0 auto" and controls.layout.min_width  # not squeezed by the mesh
    first = _xyz(box.figure)
    box.sliders["α_id[1]"].value = 2.0
    second = _xyz(box.figure)
    assert len(shown) == 2 and box.figure is shown[-1]
    assert not np.allclose(first, second)
    box.sliders["jawOpen"].value = 0.8
    assert not np.allclose(second, _xyz(box.figure)) and len(shown) == 3


def test_sweep_widget_keeps_one_colour_range(shown):
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(30, 3)).astype(np.float32)
    tris = np.array([[0, 1, 2], [2, 3, 4]])
    shapes = {lam: truth + scale * rng.normal(size=truth.shape) for lam, scale in [(0.1, 0.5), (1.0, 2.0), (10.0, 4.0)]}
    box = widgets.sweep_error_widget(shapes, truth, tris, description="λ_R")
    slider = box.sliders["λ_R"]
    assert list(slider.options) == [0.1, 1.0, 10.0]
    cmin, cmax = box.color_range
    worst = max(np.linalg.norm(s - truth, axis=1).max() for s in shapes.values())
    assert cmin == 0.0 and cmax == pytest.approx(worst)
    seen = []
    for lam in (1.0, 10.0, 0.1):
        slider.value = lam
        t = box.figure.data[0]
        assert (t.cmin, t.cmax) == (cmin, cmax)                        # not rescaled per step
        assert f"λ_R = {lam:g}" in box.figure.layout.title.text
        seen.append(np.asarray(t.intensity))
    assert not np.allclose(seen[0], seen[1]) and len(shown) == 4
    with pytest.raises(ValueError, match="at least one"):
        widgets.sweep_error_widget({}, truth, tris)
    with pytest.raises(ValueError, match="truth is"):
        widgets.sweep_error_widget({1.0: truth[:5]}, truth, tris)


def test_chapter_6_widget_reconstructs_every_sweep_network_once(shown, monkeypatch):
    import torch

    from disentangled_face.networks import inference
    from disentangled_face.training import checkpoints

    model = load_ict_facekit()
    calls = []
    monkeypatch.setattr(checkpoints, "load_model", lambda path: path)
    monkeypatch.setattr(inference, "reconstruct",
                        lambda net, image: calls.append(net) or (model.mean + float(net[-4]))[None])
    item = {"image": torch.zeros(3, 8, 8), "alpha_id": torch.zeros(model.n_id), "alpha_exp": torch.zeros(model.n_exp)}
    data = type("Data", (), {"val": [item], "model": model})()
    sweep = pd.DataFrame({"lambda_r": [0.1, 1.0], "checkpoint": ["a1.pt", "a2.pt"]})
    box = training_plots.sweep_reconstruction_widget(sweep, data)
    assert calls == ["a1.pt", "a2.pt"]
    assert box.color_range[1] == pytest.approx(2 * np.sqrt(3), rel=1e-5)  # 2 mm on each axis
    box.sliders["λ_R"].value = 1.0
    assert len(shown) == 2 and box.figure.data[0].cmax == box.color_range[1]

"""Figures of the training chapter (chapter 6): loss curves per phase and the λ_R sweep."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..training.phases import PHASE_OBJECTS, PHASES

if TYPE_CHECKING:
    from ..training.pipeline import TrainedModels

__all__ = ["history_figure", "learning_curves_figure", "sweep_figure", "scaling_figure", "sweep_reconstruction_widget"]


def history_figure(trained: TrainedModels, smooth: int = 5):
    """Per-phase loss curves (plotly), the lambda_r switch of Phase III marked.

    Phase I: code regression loss; Phase II: its loss (one point for the closed form);
    Phase III: ``L``, ``lambda_r L_R`` and ``L_C``; texture: ``L_C``. Per-step values, smoothed
    by a running mean over ``smooth`` steps, against the step.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    phases = [PHASE_OBJECTS[p] for p in PHASES if p in trained.histories and len(trained.histories[p]) > 1]
    fig = make_subplots(rows=1, cols=len(phases), subplot_titles=[p.title for p in phases], horizontal_spacing=0.07)
    for j, p in enumerate(phases, 1):
        h = trained.histories[p.name]
        sm = (lambda s: s.rolling(smooth, min_periods=1).mean()) if len(h) > smooth else (lambda s: s)
        for label, col, weight in p.curves:
            y = sm(h[col] * h[weight]) if weight else sm(h[col])
            fig.add_trace(go.Scatter(x=h.step, y=y, mode="lines+markers" if len(h) < 3 else "lines",
                                     name=f"{p.name}: {label}", legendgroup=p.name), row=1, col=j)
        info = trained.info.get(p.name, {})
        if info.get("switch_step", -1) > 0:  # the λ_R switch of Phase III
            s = info["switch_step"]
            fig.add_vline(x=s, line_dash="dash", line_color="grey", row=1, col=j)
            fig.add_annotation(x=s, y=1, xref="x" if j == 1 else f"x{j}",
                               yref="y domain" if j == 1 else f"y{j} domain", showarrow=False,
                               text=f"λ_R → 1.0 ({info.get('switch_reason', '')})",
                               xanchor="left", yanchor="top")
        fig.update_xaxes(title_text="step", row=1, col=j)
        fig.update_yaxes(title_text="loss (log scale)" if j == 1 else None, row=1, col=j)
    fig.update_yaxes(type="log")
    fig.update_annotations(font_size=12)
    fig.update_layout(height=400, margin=dict(t=90), title="training losses per step (Phase II is solved in closed form: "
                      "no curve)", legend=dict(orientation="h", y=-0.25))
    return fig


#: What the learning curves draw: (panel title, epoch-CSV column, legend label) per panel.
_CURVE_PANELS = (
    ("Phase I (3DMM-CNN-like): 3D error, mm", "phase1", (("train_rmse_mm", "training images vs targets"),
                                                          ("val_rmse_mm", "held-out images vs targets"),
                                                          ("val_true_rmse_mm", "held-out images vs true shapes"))),
    ("Phase III (Proposed): 3D error, mm", "phase3", (("train_rmse_mm", "training images vs targets"),
                                                      ("val_rmse_mm", "held-out images vs targets"),
                                                      ("val_true_rmse_mm", "held-out images vs true shapes"))),
    ("identification, % of images", None, (("phase3", "train_acc", "Phase III, training images"),
                                            ("phase3", "val_acc", "Phase III, held-out images"),
                                            ("texture", "train_acc", "texture network, training images"),
                                            ("texture", "val_acc", "texture network, held-out images"))),
)


def learning_curves_figure(trained: TrainedModels, mean_face_mm: float | None = None):
    """Training and held-out error per epoch (plotly): does a network learn, and when does it over-fit?

    Reads the learning-curve columns that :func:`~disentangled_face.training.train_phase`
    writes to each phase's epoch CSV (:meth:`~disentangled_face.training.phases.Phase.epoch_metrics`):
    Phase I and Phase III 3D error (mm, model frame, no alignment) on fixed samples of training
    and held-out images, and the top-1 identification accuracy (%) of Phase III and the texture
    network. ``mean_face_mm``, when given, is drawn as the mean face's error on the held-out
    images (the floor a network must beat).

    Raises
    ------
    ValueError
        When no phase has learning-curve columns (a run trained before they were logged).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    eps = trained.epochs
    if not any("val_rmse_mm" in eps.get(p, {}) or "val_acc" in eps.get(p, {}) for p in eps):
        raise ValueError("no learning curves in this run's epoch logs (train it again to record them)")
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for t, _, _ in _CURVE_PANELS], horizontal_spacing=0.08)
    for j, (_, phase, curves) in enumerate(_CURVE_PANELS, 1):
        for curve in curves:
            ph, col, label = (phase, *curve) if phase else curve
            e = eps.get(ph)
            if e is None or col not in e:
                continue
            y = e[col] * (100 if col.endswith("acc") else 1)
            dash = "dot" if col.startswith("train") else None
            fig.add_trace(go.Scatter(x=e.epoch + 1, y=y, mode="lines+markers", name=label, line=dict(dash=dash),
                                     legendgroup=f"{j}", showlegend=True), row=1, col=j)
        if phase and mean_face_mm is not None:
            fig.add_hline(y=mean_face_mm, line_dash="dash", line_color="grey", row=1, col=j,
                          annotation_text=f"mean face {mean_face_mm:.2f} mm", annotation_position="top right")
        fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=j)
        fig.update_yaxes(title_text="mm" if phase else "%", row=1, col=j)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=440, margin=dict(t=90), title="learning curves: training against held-out images, per epoch",
                      legend=dict(orientation="h", y=-0.3))
    return fig


def sweep_figure(sweep):
    """The lambda_r sweep as a plotly figure with a slider over lambda_r (works without a kernel).

    Left: held-out 3D error (mm) against lambda_r; right: identification accuracy. The slider
    moves a marker to one lambda_r and prints its numbers in the title.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [f"{v:g}" for v in sweep.lambda_r]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=["3D error on held-out images, mm", "identification of held-out images, %"])
    acc = 100 * sweep.acc
    fig.add_trace(go.Scatter(x=x, y=sweep.rmse_mm, mode="lines+markers", name="RMSE, full shape"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=sweep.rmse_id_mm, mode="lines+markers", name="RMSE, identity part"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=acc, mode="lines+markers", name="top-1 accuracy"), 1, 2)
    hi = [go.Scatter(x=[x[0]], y=[sweep.rmse_mm.iloc[0]], mode="markers", marker=dict(size=16, color="black",
                     symbol="circle-open"), showlegend=False),
          go.Scatter(x=[x[0]], y=[acc.iloc[0]], mode="markers", marker=dict(size=16, color="black",
                     symbol="circle-open"), showlegend=False)]
    fig.add_trace(hi[0], 1, 1)
    fig.add_trace(hi[1], 1, 2)
    steps = []
    for i, r in sweep.reset_index(drop=True).iterrows():
        title = (f"λ_R = {r.lambda_r:g}: RMSE {r.rmse_mm:.2f} mm (identity {r.rmse_id_mm:.2f} mm), "
                 f"accuracy {100 * r.acc:.1f} %")
        steps.append(dict(method="update", label=x[i],
                          args=[{"x": [x, x, x, [x[i]], [x[i]]],
                                 "y": [sweep.rmse_mm, sweep.rmse_id_mm, acc, [r.rmse_mm], [100 * r.acc]]},
                                {"title": title}]))
    fig.update_layout(sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="λ_R = "), pad=dict(t=40))],
                      title=steps[0]["args"][1]["title"], height=460, margin=dict(t=100))
    fig.update_annotations(font_size=12)
    fig.update_xaxes(title_text="λ_R", type="category")
    fig.update_yaxes(title_text="mm", row=1, col=1)
    fig.update_yaxes(title_text="%", row=1, col=2)
    return fig


def scaling_figure(study):
    """The scaling study (:func:`~disentangled_face.evaluation.scaling_study`) as two plotly panels.

    Left: 3D error on unseen subjects (mm, mean ± one standard error over the test images)
    against the number of training identities (log axis); right: lfw-like accuracy (%, mean ±
    one standard deviation over the 10 folds).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=["3D error on unseen subjects, mm (± 1 s.e.)",
                                        "lfw-like verification accuracy, % (± 1 s.d. over folds)"])
    for name, g in study.groupby("method", sort=False):
        fig.add_trace(go.Scatter(x=g.subjects, y=g.rmse_mm, error_y=dict(type="data", array=g.rmse_se_mm),
                                 mode="lines+markers", name=name, legendgroup=name), 1, 1)
        fig.add_trace(go.Scatter(x=g.subjects, y=g.lfw_accuracy, error_y=dict(type="data", array=g.lfw_std),
                                 mode="lines+markers", name=name, legendgroup=name, showlegend=False), 1, 2)
    fig.update_xaxes(type="log", title_text="training identities")
    fig.update_yaxes(title_text="mm", row=1, col=1)
    fig.update_yaxes(title_text="%", row=1, col=2)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=420, margin=dict(t=90), title="when does joint training pay off?",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def sweep_reconstruction_widget(sweep, data, index: int = 0):
    """Chapter 6's live λ_R widget: one held-out face reconstructed by each network of the sweep.

    Every network of ``sweep`` reconstructs validation image ``index`` once, up front (a forward
    pass each), so that the colour scale of the per-vertex error is fixed across the whole
    sweep (:func:`~.widgets.sweep_error_widget`) and a slider step only redraws.

    Parameters
    ----------
    sweep : DataFrame
        :func:`~disentangled_face.training.lambda_sweep`'s table (``lambda_r``, ``checkpoint``).
    data : TrainingData
        Its ``val`` items (``image``, ``alpha_id``, ``alpha_exp``) and ``model``.
    index : int
        The validation item shown.

    Returns
    -------
    ipywidgets.VBox
        See :func:`~.widgets.sweep_error_widget` (errors in mm).

    Raises
    ------
    ValueError
        When the sweep is empty.
    """
    from ..networks import inference
    from ..training.checkpoints import load_model
    from .widgets import sweep_error_widget

    item = data.val[index]
    truth = data.model.shape(item["alpha_id"].numpy(), item["alpha_exp"].numpy())
    shapes = {float(r.lambda_r): inference.reconstruct(load_model(r.checkpoint), item["image"])[0]
              for r in sweep.itertuples()}
    return sweep_error_widget(shapes, truth, data.model.triangles, description="λ_R")

"""Figures of the training chapter (chapter 6): loss curves per phase and the λ_R sweep."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..training.phases import PHASE_OBJECTS, PHASES

if TYPE_CHECKING:
    from ..training.pipeline import TrainedModels

__all__ = ["history_figure", "sweep_figure"]


def history_figure(trained: TrainedModels, smooth: int = 5):
    """Per-phase loss curves (plotly), the lambda_r switch of Phase III marked.

    Phase I: code regression loss; Phase II: its loss (one point for the closed form);
    Phase III: ``L``, ``lambda_r L_R`` and ``L_C``; texture: ``L_C``. Per-step values, smoothed
    by a running mean over ``smooth`` steps, against the step.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    phases = [PHASE_OBJECTS[p] for p in PHASES if p in trained.histories and len(trained.histories[p])]
    fig = make_subplots(rows=1, cols=len(phases), subplot_titles=[p.title for p in phases])
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
    fig.update_yaxes(type="log")
    fig.update_layout(height=380, title="training losses per phase (log scale)", legend=dict(orientation="h", y=-0.25))
    return fig


def sweep_figure(sweep):
    """The lambda_r sweep as a plotly figure with a slider over lambda_r (works without a kernel).

    Left: held-out 3D error (mm) against lambda_r; right: identification accuracy. The slider
    moves a marker to one lambda_r and prints its numbers in the title.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [f"{v:g}" for v in sweep.lambda_r]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["3D error on held-out images (mm)",
                                                        "identification accuracy (held-out images)"])
    fig.add_trace(go.Scatter(x=x, y=sweep.rmse_mm, mode="lines+markers", name="RMSE, full shape"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=sweep.rmse_id_mm, mode="lines+markers", name="RMSE, identity part"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=sweep.acc, mode="lines+markers", name="top-1 accuracy"), 1, 2)
    hi = [go.Scatter(x=[x[0]], y=[sweep.rmse_mm.iloc[0]], mode="markers", marker=dict(size=16, color="black",
                     symbol="circle-open"), showlegend=False),
          go.Scatter(x=[x[0]], y=[sweep.acc.iloc[0]], mode="markers", marker=dict(size=16, color="black",
                     symbol="circle-open"), showlegend=False)]
    fig.add_trace(hi[0], 1, 1)
    fig.add_trace(hi[1], 1, 2)
    steps = []
    for i, r in sweep.reset_index(drop=True).iterrows():
        title = (f"λ_R = {r.lambda_r:g}: RMSE {r.rmse_mm:.2f} mm (identity {r.rmse_id_mm:.2f} mm), "
                 f"accuracy {100 * r.acc:.1f} %")
        steps.append(dict(method="update", label=x[i],
                          args=[{"x": [x, x, x, [x[i]], [x[i]]],
                                 "y": [sweep.rmse_mm, sweep.rmse_id_mm, sweep.acc, [r.rmse_mm], [r.acc]]},
                                {"title": title}]))
    fig.update_layout(sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="λ_R = "), pad=dict(t=40))],
                      title=steps[0]["args"][1]["title"], height=430)
    fig.update_xaxes(title_text="λ_R", type="category")
    return fig

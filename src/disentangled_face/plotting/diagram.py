"""The encoder-decoder as a block diagram (the paper's Figs. 2-3), drawn from the network's own layers.

:func:`network_blocks` groups the rows of a layer table
(:func:`disentangled_face.networks.layer_table`: one row per leaf module in call order, with its
output shape and parameters) into the blocks a reader thinks in: the encoder's four stages,
its fully connected feature layer, the two code heads, the identity classifier and the two
decoders. :func:`network_diagram` draws them as boxes and arrows with matplotlib; every number
in a box (channels, feature-map size, convolutions, residual units, parameters, code sizes)
comes from the table, so the diagram shows whichever profile's network it is given.
"""

from __future__ import annotations

from typing import Any

from ..format import fmt_int

__all__ = ["network_blocks", "network_diagram"]

#: What each block of :class:`~disentangled_face.networks.DisentangledFaceNet` computes.
_ROLES = {"encoder.fc": "FC → feature", "head_id": "FC + tanh → c_Id", "head_res": "FC + tanh → c_Res",
          "classifier": "softmax classifier (L_C)", "dec_id": "decoder W_Id (no bias) → Δs_Id",
          "dec_res": "decoder W_Res (no bias) → Δs_Res"}


def _block_of(layer: str) -> str:
    parts = layer.split(".")
    if parts[:2] == ["encoder", "stages"] and len(parts) > 2:
        return ".".join(parts[:3])
    return ".".join(parts[:2]) if parts[0] == "encoder" and len(parts) > 1 else parts[0]


def network_blocks(table) -> Any:
    """The blocks of a network from its layer table, in call order.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``layer``, ``type``, ``output_shape`` (with the batch dimension first) and
        ``params``, as :func:`disentangled_face.networks.layer_table` returns.

    Returns
    -------
    pandas.DataFrame
        One row per block: ``block`` (``encoder.stages.0``, ``encoder.fc``, ``head_id``, ...),
        ``convs`` (3×3 convolutions), ``units`` (residual units), ``output`` (the block's output
        shape without the batch dimension) and ``params``.

    Raises
    ------
    KeyError
        When a column is missing.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"layer": ["encoder.stages.0.0", "encoder.stages.0.1", "encoder.stages.0.2.conv1",
    ...                             "encoder.stages.0.2.conv2", "encoder.fc", "head_id"],
    ...                   "type": ["Conv2d", "PReLU", "Conv2d", "Conv2d", "Linear", "Linear"],
    ...                   "output_shape": [(1, 8, 28, 24)] * 4 + [(1, 512), (1, 100)],
    ...                   "params": [224, 8, 576, 576, 393728, 51300]})
    >>> network_blocks(t).values.tolist()
    [['encoder.stages.0', 3, 1, (8, 28, 24), 1384], ['encoder.fc', 0, 0, (512,), 393728], ['head_id', 0, 0, (100,), 51300]]
    """
    import pandas as pd

    missing = {"layer", "type", "output_shape", "params"} - set(table.columns)
    if missing:
        raise KeyError(f"network_blocks: the layer table lacks the columns {sorted(missing)}")
    rows: dict[str, dict] = {}
    for layer, kind, shape, params in table[["layer", "type", "output_shape", "params"]].itertuples(index=False):
        b = rows.setdefault(_block_of(layer), {"convs": 0, "units": set(), "output": None, "params": 0})
        b["convs"] += kind == "Conv2d"
        if layer.endswith(".conv1"):
            b["units"].add(layer.rsplit(".", 1)[0])
        b["output"] = tuple(int(s) for s in shape[1:]) if shape is not None else b["output"]
        b["params"] += int(params)
    return pd.DataFrame([{"block": k, "convs": int(v["convs"]), "units": len(v["units"]), "output": v["output"],
                          "params": v["params"]} for k, v in rows.items()])


def _size(shape: tuple) -> str:
    return "×".join(fmt_int(s) for s in shape)


def _label(block: str, row: Any) -> tuple[str, str]:
    """Title and detail lines of one block's box."""
    if block.startswith("encoder.stages."):
        k = int(block.rsplit(".", 1)[1]) + 1
        return (f"stage {k}", f"conv 3×3 stride 2\n+ {row.units} residual unit{'' if row.units == 1 else 's'}\n"
                f"({row.convs} convs)\n{_size(row.output)}\n{fmt_int(row.params)} params")
    role = _ROLES.get(block, block)
    return role.split(" → ")[-1] if " → " in role else block, \
        f"{role.split(' → ')[0]}\n{_size(row.output)}\n{fmt_int(row.params)} params"


def _box(ax, x: float, y: float, title: str, detail: str, color: str, w: float = 1.08, h: float = 0.78) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                fc=color, ec="0.35", lw=0.8))
    ax.text(x, y + h / 2 - 0.07, title, ha="center", va="top", fontsize=8.5, weight="bold")
    ax.text(x, y + h / 2 - 0.22, detail, ha="center", va="top", fontsize=7, linespacing=1.15)


def _arrow(ax, a: tuple, b: tuple, **kw) -> None:
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="-|>", color="0.3", lw=0.9, shrinkA=0, shrinkB=0, **kw))


def network_diagram(table, input_shape: tuple, title: str | None = None):
    """A block diagram of the encoder-decoder, drawn from its layer table.

    Top row: the input image and the encoder's stages; below: the feature, the two code heads
    (``c_Res`` above ``c_Id``), the classifier on ``c_Id`` and the two decoders, whose outputs
    add to the mean shape (Eq. 2).

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`disentangled_face.networks.layer_table` of a
        :class:`~disentangled_face.networks.DisentangledFaceNet`.
    input_shape : tuple
        The image the network takes, channels first: ``(3, 112, 96)``.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot: show it with :func:`~disentangled_face.plotting.show.show_image`.

    Raises
    ------
    ValueError
        When the table lacks one of the blocks ``encoder.fc``, ``head_id``, ``head_res``,
        ``classifier``, ``dec_id``, ``dec_res``, or has no encoder stage.

    >>> import torch
    >>> from disentangled_face.networks import DisentangledFaceNet, layer_table
    >>> net = DisentangledFaceNet(50, 4, 3, 5, width=0.125, input_size=(32, 32), feature_dim=8)
    >>> fig = network_diagram(layer_table(net, torch.zeros(1, 3, 32, 32)), (3, 32, 32))
    >>> len(fig.axes), "Δs_Id" in [t.get_text() for t in fig.axes[0].texts]
    (1, True)
    """
    from matplotlib.figure import Figure

    blocks = network_blocks(table).set_index("block")
    stages = [b for b in blocks.index if b.startswith("encoder.stages.")]
    needed = ["encoder.fc", "head_id", "head_res", "classifier", "dec_id", "dec_res"]
    absent = [b for b in needed if b not in blocks.index]
    if absent or not stages:
        raise ValueError(f"network_diagram: no blocks {absent or ['encoder.stages.*']} in the layer table")
    dx = 1.3
    fig = Figure(figsize=(max(7.5, dx * (len(stages) + 1) * 1.2), 5.4))
    ax = fig.add_axes((0, 0, 1, 0.93 if title else 1))
    ax.set_axis_off()
    top, enc = 3.3, "#dbe8f6"
    _box(ax, 0, top, "input image", _size(input_shape), "#eeeeee")
    for i, s in enumerate(stages, start=1):
        _box(ax, i * dx, top, *_label(s, blocks.loc[s]), enc)
        _arrow(ax, ((i - 1) * dx + 0.54, top), (i * dx - 0.54, top))
    mid = 1.6  # the bottom part: feature, the two heads, their decoders, the classifier on c_Id
    # c_Id below c_Res, so that the classifier on c_Id sits under it without crossing a box
    pos = {"encoder.fc": (0, mid), "head_res": (dx, mid + 0.5), "head_id": (dx, mid - 0.5),
           "dec_res": (2 * dx, mid + 0.5), "dec_id": (2 * dx, mid - 0.5), "classifier": (2 * dx, mid - 1.5)}
    colors = {"encoder.fc": enc, "head_id": "#fde3c8", "head_res": "#fde3c8", "classifier": "#f3d9f0",
              "dec_id": "#d7f0d6", "dec_res": "#d7f0d6"}
    for b, (x, y) in pos.items():
        _box(ax, x, y, *_label(b, blocks.loc[b]), colors[b])
    # the encoder's last stage wraps down to the feature layer
    last = len(stages) * dx
    ax.plot([last, last, 0, 0], [top - 0.39, top - 0.72, top - 0.72, mid + 0.45], color="0.3", lw=0.9)
    _arrow(ax, (0, mid + 0.45), (0, mid + 0.39))
    for a, b in (("encoder.fc", "head_id"), ("encoder.fc", "head_res"), ("head_id", "dec_id"),
                 ("head_res", "dec_res"), ("head_id", "classifier")):
        (xa, ya), (xb, yb) = pos[a], pos[b]
        _arrow(ax, (xa + 0.54, ya), (xb - 0.54, yb))
    n3 = blocks.loc["dec_id", "output"][-1]
    _box(ax, 3 * dx, mid, "s", f"s̄ + Δs_Id + Δs_Res\n(Eq. 2)\n{fmt_int(n3)} = 3 × {fmt_int(n3 // 3)}\nvertex coordinates",
         "#fff6bf")
    for b in ("dec_id", "dec_res"):
        _arrow(ax, (pos[b][0] + 0.54, pos[b][1]), (3 * dx - 0.54, mid))
    ax.set_xlim(-0.62, max(last, 3 * dx) + 0.62)
    ax.set_ylim(mid - 1.5 - 0.46, top + 0.42)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig

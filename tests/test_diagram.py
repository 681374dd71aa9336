"""The encoder-decoder's block diagram (plotting/diagram.py) is drawn from the network's layers."""

from __future__ import annotations

import pytest
import torch

from disentangled_face.networks import DisentangledFaceNet, layer_table
from disentangled_face.plotting.diagram import network_blocks, network_diagram


@pytest.fixture(scope="module")
def table():
    net = DisentangledFaceNet(50, 4, 3, 7, width=0.125, input_size=(32, 32), feature_dim=8)
    return layer_table(net, torch.zeros(1, 3, 32, 32))


def test_blocks_follow_sphere20a(table):
    blocks = network_blocks(table).set_index("block")
    stages = [b for b in blocks.index if b.startswith("encoder.stages.")]
    assert blocks.loc[stages, "units"].tolist() == [1, 2, 4, 1]           # SphereFace-20's residual units
    assert blocks.loc[stages, "convs"].sum() == 20 and blocks.loc[stages, "convs"].tolist() == [3, 5, 9, 3]
    assert blocks.loc["dec_id", "output"] == (150,) and blocks.loc["classifier", "output"] == (7,)
    assert blocks["params"].sum() == table["params"].sum()                # every parameter in one block


def test_diagram_shows_the_tables_numbers(table):
    fig = network_diagram(table, (3, 32, 32), title="test")
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for word in ("stage 1", "stage 4", "c_Id", "c_Res", "Δs_Id", "Δs_Res", "3×32×32", "150 = 3 × 50"):
        assert word in texts
    blocks = network_blocks(table).set_index("block")
    assert f"{blocks.loc['dec_id', 'params']:,} params" in texts


def test_diagram_needs_the_networks_blocks(table):
    with pytest.raises(ValueError, match="classifier"):
        network_diagram(table[table.layer != "classifier"], (3, 32, 32))
    with pytest.raises(KeyError, match="params"):
        network_blocks(table.drop(columns="params"))

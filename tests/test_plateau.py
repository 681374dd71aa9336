"""The λ_R plateau switch of Phase III (training/plateau.py), alone."""

import pytest

from disentangled_face.training import PlateauSwitch


def run(sw, losses, steps_per_epoch=10):
    """Feed epoch losses; the epochs (1-based) at which λ_R switched, and λ_R per epoch."""
    switched, lam = [], []
    for e, loss in enumerate(losses, 1):
        if sw.done:
            break
        lam.append(sw.lambda_r)
        if sw.end_epoch(loss, step=e * steps_per_epoch, epoch=e):
            switched.append(e)
    return switched, lam


def test_switch_on_plateau():
    sw = PlateauSwitch((0.5, 1.0), epochs=10, epochs_after_switch=2, patience=2, min_delta=0.01)
    # epoch 2 improves by 10 %, epochs 3 and 4 by < 1 %: a plateau after two bad epochs
    switched, lam = run(sw, [10.0, 9.0, 8.95, 8.94, 7.0, 6.0, 5.0])
    assert switched == [4] and lam == [0.5, 0.5, 0.5, 0.5, 1.0, 1.0]
    assert (sw.switch_reason, sw.switch_epoch, sw.switch_step) == ("plateau", 4, 40)
    assert sw.done and sw.max_epochs == 12


def test_switch_at_max_epochs_and_improvement_resets_patience():
    sw = PlateauSwitch((0.5, 1.0), epochs=4, epochs_after_switch=1, patience=2, min_delta=0.01)
    switched, lam = run(sw, [10.0, 10.0, 5.0, 5.0, 4.0, 3.0])  # bad, improve, bad: never 2 bad in a row
    assert switched == [4] and sw.switch_reason == "max_epochs" and lam == [0.5] * 4 + [1.0]
    assert sw.done


def test_no_switch_with_one_value_or_zero_epochs_after():
    sw = PlateauSwitch((0.7,), epochs=3, patience=1, min_delta=0.5)
    switched, lam = run(sw, [5.0, 5.0, 5.0, 5.0])
    assert switched == [] and lam == [0.7] * 3 and sw.done and sw.switch_reason == ""
    sw = PlateauSwitch((0.5, 1.0), epochs=5, epochs_after_switch=0, patience=1, min_delta=0.0)
    switched, _ = run(sw, [3.0, 3.0, 1.0])
    assert switched == [2] and sw.done and sw.lambda_r == 1.0


def test_state_roundtrip():
    a = PlateauSwitch((0.5, 1.0), epochs=6, epochs_after_switch=2, patience=2, min_delta=0.1)
    run(a, [5.0, 4.9])
    b = PlateauSwitch((0.5, 1.0), epochs=6, epochs_after_switch=2, patience=2, min_delta=0.1)
    b.load_state_dict(a.state_dict())
    assert b == a
    assert set(a.state_dict()) == {"stage", "stage_epoch", "best", "bad", "switch_step", "switch_epoch",
                                   "switch_reason"}
    assert a.end_epoch(4.8, 30, 3) and b.end_epoch(4.8, 30, 3) and a == b


@pytest.mark.parametrize("loss, bad", [(9.0, 0), (9.95, 1)])
def test_relative_min_delta(loss, bad):
    sw = PlateauSwitch((0.5, 1.0), epochs=9, epochs_after_switch=1, patience=3, min_delta=0.01)
    sw.end_epoch(10.0, 1, 1)
    sw.end_epoch(loss, 2, 2)
    assert sw.bad == bad

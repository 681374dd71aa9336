"""The networks learn (issue 10): on a small, fast population the trained encoders beat the mean
face on held-out images, and the identification heads beat chance by a wide margin.

Real rendered images, real fitted targets (the paper's multi-image fit), the book profile's
recipe at a small size; every figure asserted is computed by the run, none is a timing.
"""

import numpy as np
import pytest

from disentangled_face import paths
from disentangled_face import training as T
from disentangled_face.evaluation import held_out_aligned
from disentangled_face.config import load_config, with_overrides

SUBJECTS, IMAGES = 200, 6


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("learning")
    real = paths.data_dir("ict-facekit")
    mp = pytest.MonkeyPatch()
    mp.setenv(paths.DATA_ENV, str(tmp))
    (tmp / "ict-facekit").symlink_to(real, target_is_directory=True)
    cfg = with_overrides(load_config("book"), {
        "synth.workers": 1,
        "synth.protocols": {"train": {"subjects": SUBJECTS, "images_per_subject": IMAGES}},
        "train": {"val_fraction": 1 / IMAGES, "num_threads": 1, "batch_size": 32,
                  "phase1": {"epochs": 8, "warmup_steps": 20},
                  "phase3": {"epochs": 4, "epochs_after_switch": 2},
                  "texture": {"epochs": 8, "warmup_steps": 20}}})
    data = T.training_data(cfg, progress=False)
    trained = T.train_pipeline(cfg, data=data, progress=False)
    yield data, trained, T.evaluate_phases(trained, data).set_index("network"), held_out_aligned(trained, data)
    mp.undo()


def test_encoders_beat_the_mean_face_on_held_out_images(small_run):
    """Chapter 7's measure (similarity Procrustes on the 68 landmarks, 95 mm crop), held-out images."""
    data, trained, _, aligned = small_run
    mean = aligned.loc["mean face", "rmse_mm"]
    for name in ("3DMM-CNN-like", "Proposed"):
        assert aligned.loc[name, "rmse_mm"] < mean, (name, aligned.loc[name, "rmse_mm"], mean)
    # the learning curves were recorded and the held-out error fell during Phase I
    e = trained.epochs["phase1"]
    assert e.val_true_rmse_mm.iloc[-1] < e.val_true_rmse_mm.iloc[0]


def test_identification_beats_chance_five_times(small_run):
    data, _, s, _ = small_run
    chance = 1 / data.n_subjects
    for net in ("phase3", "texture"):
        assert s.loc[net, "acc"] >= 5 * chance, (net, s.loc[net, "acc"], chance)

"""Synthetic inputs shared by the test modules (not a test module itself)."""

import numpy as np


def verification_features(n_subj=40, per=5, d=16, noise=0.3, seed=0):
    """Features of ``n_subj`` subjects x ``per`` images around random centres, with 300 genuine
    and 300 impostor pairs in 10 folds: ``(F, label, pairs, same, folds)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_subj, d))
    label = np.repeat(np.arange(n_subj), per)
    F = centres[label] + noise * rng.normal(size=(label.size, d))
    gen = [(i * per + a, i * per + b) for i in range(n_subj) for a in range(per) for b in range(a + 1, per)]
    gen = np.array(gen)[rng.permutation(len(gen))[:300]]
    imp = []
    while len(imp) < 300:
        i, j = rng.integers(0, label.size, 2)
        if label[i] != label[j]:
            imp.append((i, j))
    pairs = np.concatenate([gen, np.array(imp)])
    same = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    folds = np.r_[np.arange(300) % 10, np.arange(300) % 10]
    return F, label, pairs, same, folds

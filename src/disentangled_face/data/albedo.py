"""Procedural per-subject skin albedo of the synthetic faces (chapter 2).

A subject's albedo carries identity as its shape does: a skin tone, smooth low-frequency
colour variation over the mesh (random Fourier features of the vertex positions), lip and
cheek colour, eyebrows and a hairline with a hair colour.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AlbedoModel"]


class AlbedoModel:
    """Per-subject skin albedo over the mesh (n, 3), RGB in [0, 1].

    Region weights (lips, eyebrows, cheeks, scalp) are computed once from the mean shape and
    the 68 landmarks; a subject then draws a skin tone, region colours, a hairline and smooth
    colour variation (random Fourier features of the mean-shape vertex positions, wavelengths
    50-150 mm). Source: a simple procedural texture written for this book (no texture model
    ships with ICT-FaceKit's face area).
    """

    def __init__(self, model) -> None:
        P = np.asarray(model.mean, np.float64)
        lm = P[np.asarray(model.landmarks)]
        self.P = P
        self.n = P.shape[0]
        # lips: inside the outer lip contour (frontal xy) or near it, on the front of the face
        lips = lm[48:60]
        d_lips = _polyline_distance(P, lips, closed=True)
        from matplotlib.path import Path as MplPath

        inside = MplPath(lips[:, :2]).contains_points(P[:, :2]) & (P[:, 2] > lips[:, 2].min() - 10)
        self.w_lips = np.where(inside, 1.0, np.exp(-0.5 * (d_lips / 1.5) ** 2))
        # eyebrows: a band around each brow polyline, thicker at the inner end
        d_brow = np.minimum(_polyline_distance(P, lm[17:22]), _polyline_distance(P, lm[22:27]))
        self.w_brow = 1.0 / (1.0 + np.exp((d_brow - 4.0) / 0.8))
        # cheeks: blobs below the eyes
        centres = np.stack([(lm[1] + lm[31] + lm[48]) / 3, (lm[15] + lm[35] + lm[54]) / 3])
        dc = np.linalg.norm(P[:, None] - centres[None], axis=-1).min(1)
        self.w_cheek = np.exp(-0.5 * (dc / 18.0) ** 2)
        # scalp reference heights: the brows' top and the nose-tip depth
        self.brow_y = float(lm[17:27, 1].max())
        self.face_z = float(lm[30, 2])

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One subject's albedo (n, 3) float32 from ``rng``."""
        P = self.P
        tone = rng.uniform(0.0, 1.0)
        light_skin, dark_skin = np.array([0.93, 0.76, 0.64]), np.array([0.38, 0.25, 0.18])
        skin = (1 - tone) * light_skin + tone * dark_skin
        skin = skin * np.exp(rng.normal(0, 0.04, 3))
        alb = np.tile(skin, (self.n, 1))
        # smooth variation: random Fourier features
        k = 8
        wavelength = rng.uniform(50.0, 150.0, k)
        dirs = rng.normal(size=(k, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        phase = rng.uniform(0, 2 * np.pi, k)
        feats = np.cos(P @ (dirs.T * (2 * np.pi / wavelength)) + phase) / np.sqrt(k)  # (n, k)
        # brightness and redness fields (skin varies mostly in melanin and blood, not hue)
        brightness = feats @ rng.normal(0, 0.10, k)
        redness = feats @ rng.normal(0, 0.06, k)
        alb *= np.exp(brightness[:, None] + redness[:, None] * np.array([1.0, -0.6, -0.6]))
        # cheeks and lips
        alb *= 1 + self.w_cheek[:, None] * rng.uniform(0.0, 0.12) * np.array([0.6, -0.4, -0.4])
        lip = skin * np.array([0.95, 0.62, 0.62]) * rng.uniform(0.8, 1.0)
        alb = alb * (1 - self.w_lips[:, None]) + lip * self.w_lips[:, None]
        # hair colour (black, brown, blond, red, grey)
        hair_palette = np.array([[0.06, 0.05, 0.04], [0.22, 0.14, 0.08], [0.55, 0.42, 0.25],
                                 [0.45, 0.20, 0.10], [0.55, 0.55, 0.55]])
        hair = hair_palette[rng.choice(5, p=[0.35, 0.3, 0.15, 0.08, 0.12])] * np.exp(rng.normal(0, 0.1, 3))
        brow_strength = rng.uniform(0.5, 0.95)
        wb = self.w_brow[:, None] * brow_strength
        alb = alb * (1 - wb) + hair * wb
        # scalp: above a hairline (height above the brows, curving down at the temples) and
        # toward the back of the head; some subjects are bald
        if rng.uniform() > 0.15:
            line = self.brow_y + rng.uniform(20.0, 45.0) - rng.uniform(0.0, 0.006) * P[:, 0] ** 2
            back = self.face_z - rng.uniform(95.0, 120.0)
            s = np.maximum((P[:, 1] - line) / 4.0, (back - P[:, 2]) / 6.0 + (P[:, 1] - self.brow_y + 10) / 8.0)
            wh = 1.0 / (1.0 + np.exp(-np.clip(s, -30, 30)))
            alb = alb * (1 - wh[:, None]) + hair * wh[:, None]
        return np.clip(alb, 0.0, 1.0).astype(np.float32)


def _polyline_distance(P: np.ndarray, pts: np.ndarray, closed: bool = False) -> np.ndarray:
    """Distance (n,) from points P (n, 3) to a 3D polyline through ``pts`` (k, 3)."""
    a = pts if not closed else pts
    b = np.roll(pts, -1, axis=0) if closed else pts[1:]
    a = a[: len(b)]
    ab = b - a  # (s, 3)
    ap = P[:, None, :] - a[None]  # (n, s, 3)
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    d = np.linalg.norm(ap - t[..., None] * ab, axis=-1)
    return d.min(1)

"""The camera of the paper: scaled orthographic (weak-perspective) projection (Eq. 6).

One convention for the whole project, shared by the renderer, the synthetic landmarks and the
fitter. Model coordinates are millimetres with x to the right in a frontal image, y up and z toward
the camera. Image coordinates are
pixels with the origin at the top-left corner, u to the right and v **down**. A point X (mm)
projects to

    u = f * (R X)_x + t_u
    v = -f * (R X)_y + t_v                                                   (Eq. 6)

with scale ``f`` (pixels per mm), rotation ``R`` (3, 3, det +1) and 2D translation
``t = (t_u, t_v)`` (pixels). This is the paper's ``u = f P R (s_U + t)`` with
``P = [[1, 0, 0], [0, 1, 0]]``, written with the translation in the image plane and the
image's downward v axis.

Euler angles (radians): ``R = R_z(roll) @ R_x(pitch) @ R_y(yaw)``. Yaw rotates about the
vertical y axis: at yaw = +90 deg the nose points to the image's right and the face's +x half
points away from the camera.
"""

from __future__ import annotations

import numpy as np
import torch


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def rotation_from_euler(yaw, pitch, roll) -> np.ndarray:
    """Rotation matrices ``R_z(roll) @ R_x(pitch) @ R_y(yaw)``.

    Parameters
    ----------
    yaw, pitch, roll : float or ndarray, shape (B,)
        Angles in radians.

    Returns
    -------
    ndarray, shape (3, 3) or (B, 3, 3)
    """
    yaw, pitch, roll = (np.asarray(a, dtype=np.float64) for a in (yaw, pitch, roll))
    single = yaw.ndim == 0
    yaw, pitch, roll = np.broadcast_arrays(np.atleast_1d(yaw), np.atleast_1d(pitch), np.atleast_1d(roll))
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    Ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    Rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    Rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    R = Rz @ Rx @ Ry
    return R[0] if single else R


def euler_from_rotation(R) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`rotation_from_euler`: (yaw, pitch, roll) in radians.

    Parameters
    ----------
    R : ndarray, shape (3, 3) or (B, 3, 3)

    Returns
    -------
    yaw, pitch, roll : float or ndarray (B,), radians (pitch in [-pi/2, pi/2])
    """
    R = np.asarray(R, dtype=np.float64)
    # R = Rz Rx Ry: R[2,1] = sin(pitch); R[2,0] = -cos(p) sin(y); R[2,2] = cos(p) cos(y);
    # R[0,1] = -sin(r) cos(p); R[1,1] = cos(r) cos(p)
    pitch = np.arcsin(np.clip(R[..., 2, 1], -1.0, 1.0))
    yaw = np.arctan2(-R[..., 2, 0], R[..., 2, 2])
    roll = np.arctan2(-R[..., 0, 1], R[..., 1, 1])
    return yaw, pitch, roll


def project(points, R, f, t):
    """Scaled orthographic projection to pixel coordinates (Eq. 6), numpy or torch, batched.

    Parameters
    ----------
    points : array or tensor, shape (n, 3) or (B, n, 3)
        3D points in mm.
    R : shape (3, 3) or (B, 3, 3)
        Rotations.
    f : float or shape (B,)
        Scale in pixels per mm.
    t : shape (2,) or (B, 2)
        Image translation (u, v) in pixels.

    Returns
    -------
    shape (n, 2) or (B, n, 2)
        Pixel coordinates (u right, v down).

    Raises
    ------
    ValueError
        When ``points`` is not (..., n, 3) or ``R`` is not (..., 3, 3).
    """
    if points.shape[-1] != 3 or points.ndim not in (2, 3):
        raise ValueError(f"points must have shape (n, 3) or (B, n, 3), got {tuple(points.shape)}")
    if tuple(R.shape[-2:]) != (3, 3):
        raise ValueError(f"R must have shape (3, 3) or (B, 3, 3), got {tuple(R.shape)}")
    if _is_torch(points):
        f = torch.as_tensor(f, dtype=points.dtype, device=points.device)
        t = torch.as_tensor(t, dtype=points.dtype, device=points.device)
        R = torch.as_tensor(R, dtype=points.dtype, device=points.device)
        rot = points @ R.transpose(-1, -2)
        flip = torch.tensor([1.0, -1.0], dtype=points.dtype, device=points.device)
    else:
        points = np.asarray(points)
        f, t, R = np.asarray(f, dtype=points.dtype), np.asarray(t, dtype=points.dtype), np.asarray(R, dtype=points.dtype)
        rot = points @ np.swapaxes(R, -1, -2)
        flip = np.array([1.0, -1.0], dtype=points.dtype)
    if f.ndim == 1:
        f = f[:, None, None]
    if t.ndim == 2:
        t = t[:, None, :]
    return f * rot[..., :2] * flip + t


def depth(points, R):
    """Depth toward the camera, ``(R X)_z`` in mm (larger is closer), shape (..., n)."""
    if _is_torch(points):
        return (points @ torch.as_tensor(R, dtype=points.dtype, device=points.device).transpose(-1, -2))[..., 2]
    return (np.asarray(points) @ np.swapaxes(np.asarray(R), -1, -2))[..., 2]

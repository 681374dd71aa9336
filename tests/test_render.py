"""The headless rasteriser on analytic cases: coverage, depth test, shading, tiles, visibility."""

import numpy as np
import pytest

from disentangled_face.data import render
from disentangled_face.shape import camera
from disentangled_face.data.render import Light, Renderer, hole_fill_triangles, vertex_normals, visibility

QUAD_TRIS = np.array([[0, 2, 1], [0, 3, 2]])  # counter-clockwise seen from +z with v down


def quad(u0, v0, u1, v1, z=0.0):
    """A rectangle in pixel coordinates at depth z (mm), facing the camera."""
    return np.array([[u0, v0, z], [u1, v0, z], [u1, v1, z], [u0, v1, z]], np.float64)


@pytest.fixture(scope="module")
def quad_renderer():
    return Renderer(QUAD_TRIS, 4, height=112, width=96, max_batch=4)


def test_quad_covers_expected_pixels(quad_renderer):
    out = quad_renderer.render(quad(20, 30, 60, 70, z=5.0)[None], normals=np.tile([0, 0, 1.0], (1, 4, 1)),
                               albedo=np.full((4, 3), 0.5), light=Light.frontal(1, ambient=0.4, diffuse=0.6))
    expected = np.zeros((112, 96), bool)
    expected[30:70, 20:60] = True  # rows v in [30, 70), columns u in [20, 60): pixel centres inside
    np.testing.assert_array_equal(out.mask[0], expected)
    # Lambert with n = l = +z: albedo * (ambient + diffuse) = 0.5 -> 127.5 -> 127 or 128
    assert set(np.unique(out.rgb[0][expected])) <= {127, 128}
    assert np.all(out.rgb[0][~expected] == 0)
    np.testing.assert_allclose(out.depth[0][expected], 5.0, atol=0.01)
    assert np.all(np.isneginf(out.depth[0][~expected]))


def test_half_pixel_edges_follow_pixel_centres(quad_renderer):
    out = quad_renderer.render(quad(10.4, 10.6, 20.6, 20.4)[None], scale=1.0)
    rows, cols = np.nonzero(out.mask[0])
    # centres j + 0.5 in (10.4, 20.6) -> j = 10..20; i + 0.5 in (10.6, 20.4) -> i = 11..19
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (10, 20, 11, 19)


def test_lambert_shading_angle(quad_renderer):
    theta = np.radians(60)
    light = Light(np.zeros((1, 3)), np.array([[np.sin(theta), 0, np.cos(theta)]]), np.ones((1, 3)))
    out = quad_renderer.render(quad(10, 10, 50, 50)[None], normals=np.tile([0, 0, 1.0], (1, 4, 1)),
                               albedo=np.ones((4, 3)), light=light)
    # 255 * cos(60 deg) = 127.5
    assert abs(out.rgb[0, 30, 30].astype(float).mean() - 127.5) <= 1.0


def test_flat_shading_from_derivatives_matches_plane_normal(quad_renderer):
    # a plane tilted about the vertical axis: depth grows with u; its normal is known
    f, slope = 2.0, 0.5  # z (mm) = slope * u / f  -> in pixel units dz/du = slope
    q = quad(10, 10, 50, 50)
    q[:, 2] = slope * q[:, 0] / f
    n = np.array([-slope, 0.0, 1.0]) / np.hypot(slope, 1.0)
    light = Light(np.zeros((1, 3)), np.array([[0, 0, 1.0]]), np.ones((1, 3)))
    flat = quad_renderer.render(q[None], albedo=np.ones((4, 3)), light=light, scale=f)
    smooth = quad_renderer.render(q[None], normals=np.tile(n, (1, 4, 1)), albedo=np.ones((4, 3)), light=light)
    assert abs(flat.rgb[0, 30, 30, 0] - 255 * n[2]) <= 1.5
    assert abs(int(flat.rgb[0, 30, 30, 0]) - int(smooth.rgb[0, 30, 30, 0])) <= 2


def test_depth_test_keeps_the_closer_surface_in_any_order(quad_renderer):
    near, far = quad(10, 10, 50, 50, z=20.0), quad(30, 30, 70, 70, z=-20.0)
    verts = np.concatenate([near, far])
    alb = np.array([[1.0, 0, 0]] * 4 + [[0, 0, 1.0]] * 4)
    for tris in (np.concatenate([QUAD_TRIS, QUAD_TRIS + 4]), np.concatenate([QUAD_TRIS + 4, QUAD_TRIS])):
        r = Renderer(tris, 8, height=112, width=96, max_batch=1, ctx=quad_renderer.ctx)
        out = r.render(verts[None], albedo=alb, scale=1.0, light=Light.frontal(1, 0.0, 1.0))
        assert tuple(out.rgb[0, 40, 40]) == (255, 0, 0)  # overlap: the near (red) quad
        assert tuple(out.rgb[0, 60, 60]) == (0, 0, 255)  # far quad alone
        assert out.depth[0, 40, 40] == pytest.approx(20.0, abs=0.01)


def test_tiles_do_not_bleed_and_batch_equals_single(quad_renderer):
    big = quad(-200, -200, 300, 300, z=1.0)  # far larger than its tile
    small = quad(40, 40, 50, 50)
    verts = np.stack([small, big, small, small])
    alb = np.ones((4, 4, 3))
    batch = quad_renderer.render(verts, albedo=alb, scale=1.0)
    assert batch.mask[1].all()
    for i in (0, 2, 3):
        single = quad_renderer.render(verts[i:i + 1], albedo=alb[i:i + 1], scale=1.0)
        np.testing.assert_array_equal(batch.rgb[i], single.rgb[0])
        assert batch.mask[i].sum() == 100


def test_batches_larger_than_max_batch_are_split(quad_renderer):
    verts = np.stack([quad(10 + i, 10, 30 + i, 30) for i in range(9)])
    out = quad_renderer.render(verts, scale=1.0)
    assert out.rgb.shape == (9, 112, 96, 3)
    for i in range(9):
        cols = np.nonzero(out.mask[i].any(0))[0]
        assert (cols.min(), cols.max()) == (10 + i, 29 + i)


def test_bad_shapes_raise(quad_renderer):
    with pytest.raises(ValueError, match=r"uvz must have shape \(B, 4, 3\)"):
        quad_renderer.render(np.zeros((1, 5, 3)), scale=1.0)
    with pytest.raises(ValueError, match="normals or the camera scale"):
        quad_renderer.render(np.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match="triangle"):
        Renderer(np.array([[0, 1, 7]]), 4, ctx=quad_renderer.ctx)


def test_missing_driver_error_names_what_to_install(monkeypatch):
    import moderngl

    def fail(*a, **k):
        raise Exception("libEGL.so.1: cannot open shared object file")

    monkeypatch.setattr(moderngl, "create_standalone_context", fail)
    with pytest.raises(render.RendererUnavailableError, match="libegl1.*libgl1-mesa-dri"):
        render.create_context(shared=False)


def test_vertex_normals_plane_and_sphere():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    n = vertex_normals(sphere.vertices, sphere.faces)
    radial = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    assert np.min((n * radial).sum(1)) > 0.995  # outward, close to radial
    verts = np.stack([quad(0, 0, 1, 1)] * 3)
    verts[..., 1] *= -1  # quad() is in image coordinates (v down); flip to y up
    np.testing.assert_allclose(vertex_normals(verts, QUAD_TRIS), np.tile([0, 0, 1.0], (3, 4, 1)), atol=1e-6)


def test_hole_fill_closes_inner_loops_only():
    # a 4x4 grid of vertices with the centre cell removed: one inner loop of 4 edges
    g = np.arange(16).reshape(4, 4)
    tris = []
    for i in range(3):
        for j in range(3):
            if (i, j) == (1, 1):
                continue
            a, b, c, d = g[i, j], g[i, j + 1], g[i + 1, j + 1], g[i + 1, j]
            tris += [[a, b, c], [a, c, d]]
    tris = np.array(tris)
    loops = render.boundary_loops(tris)
    assert [len(lp) for lp in loops] == [12, 4]
    fill = hole_fill_triangles(tris)
    assert fill.shape == (2, 3)
    assert set(fill.ravel()) == {5, 6, 9, 10}
    # the filled mesh is closed inside: only the outer loop remains
    assert [len(lp) for lp in render.boundary_loops(np.concatenate([tris, fill]))] == [12]


@pytest.fixture(scope="module")
def model():
    from disentangled_face.shape import load_ict_facekit

    return load_ict_facekit()


def test_face_holes_are_two_eyes_and_mouth(model):
    loops = render.boundary_loops(model.triangles)[1:]
    centres = np.array([model.mean[lp].mean(0) for lp in loops])
    eyes = model.mean[model.landmarks[36:48]].reshape(2, 6, 3).mean(1)
    mouth = model.mean[model.landmarks[60:68]].mean(0)
    assert len(loops) == 3
    d = np.linalg.norm(centres[:, None] - np.concatenate([eyes, mouth[None]])[None], axis=-1)
    assert np.all(d.min(0) < 8.0)  # each loop centre within 8 mm of an eye or the mouth


def test_face_turned_90_degrees_hides_the_far_side(model):
    from disentangled_face.data import render_faces

    yaw = np.radians([0.0, 90.0, -90.0])
    out = render_faces(model, np.zeros((3, model.n_id)), np.zeros((3, model.n_exp)), yaw)
    x = model.mean[model.landmarks][:, 0]
    assert out.visible[0].all()  # frontal: all 68 seen
    # yaw +90: the +x half points away from the camera (camera.py convention)
    assert not out.visible[1][x > 20].any()
    assert out.visible[1][x < -20].mean() > 0.8
    assert not out.visible[2][x < -20].any()
    assert out.visible[2][x > 20].mean() > 0.8
    # the profile is drawn inside the crop, nose toward the image's right at yaw +90
    assert out.mask[1].mean() > 0.3
    assert out.landmarks[1, 30, 0] > out.landmarks[1, 27:36, 0].mean() - 1e-3


def test_visibility_uses_depth_and_image_bounds():
    depth = np.full((1, 10, 10), -np.inf, np.float32)
    depth[0, 2:8, 2:8] = 10.0  # a surface at 10 mm
    pts = np.array([[[5.5, 5.5, 10.0],    # on the surface
                     [5.5, 5.5, 0.0],     # 10 mm behind it
                     [0.5, 0.5, -50.0],   # nothing in front
                     [12.0, 5.0, 100.0]]])  # outside the image
    np.testing.assert_array_equal(visibility(pts, depth), [[True, False, True, False]])


def test_projection_of_renderer_matches_camera_project(model):
    """The rendered silhouette and camera.project agree: the projected nose tip is on the face,
    and its rendered depth equals camera.depth."""
    from disentangled_face.data import render_faces

    yaw, pitch = np.radians(30.0), np.radians(10.0)
    out = render_faces(model, np.zeros((1, model.n_id)), np.zeros((1, model.n_exp)), yaw, pitch, 0.0)
    R = camera.rotation_from_euler(yaw, pitch, 0.0)
    tip = model.mean[model.nose_tip]
    u, v = camera.project(tip[None], R, out.scale[0], out.trans[0])[0]
    d = camera.depth(tip[None], R)[0]
    np.testing.assert_allclose(out.landmarks[0, 30], (u, v), atol=1e-3)
    assert out.mask[0, int(v), int(u)]
    assert out.depth[0, int(v), int(u)] == pytest.approx(d, abs=3.0)

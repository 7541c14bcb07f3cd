import numpy as np

from surround_depth_train.data.surroundsim.render import cast_rays, render_camera
from surround_depth_train.data.surroundsim.rig import EGO_BODY_HI, EGO_BODY_LO, surroundsim_rig
from surround_depth_train.data.surroundsim.world import Material, World
from surround_depth_train.geometry.rig import optical_rotation
from surround_depth_train.geometry.transforms import make_transform

W, H, F = 80, 60, 40.0
K = np.array([[F, 0.0, (W - 1) / 2], [0.0, F, (H - 1) / 2], [0.0, 0.0, 1.0]])
HEIGHT = 1.5
T_BASE_CAM = make_transform(optical_rotation(0.0), [0.0, 0.0, HEIGHT])  # looking along +x


def _empty_world():
    return World.from_boxes(np.zeros((0, 3)), np.zeros((0, 3)))


def test_ground_plane_depth_equals_the_analytic_value():
    r = render_camera(_empty_world(), 0.0, np.eye(4), T_BASE_CAM, K, W, H)
    v = np.arange(H, dtype=np.float64)
    below = v > K[1, 2]
    expected = HEIGHT * F / (v[below] - K[1, 2])  # z = h f / (v - cy) on a level camera
    np.testing.assert_allclose(r.depth[below], np.repeat(expected[:, None], W, 1), rtol=1e-5)
    assert np.all(r.depth[~below] == 0), 'rays at or above the horizon see sky, with no depth'
    assert np.all(r.material[~below] == -1)


def test_box_face_depth_equals_the_analytic_value():
    world = World.from_boxes([[10.0, -3.0, 0.0]], [[14.0, 3.0, 4.0]])
    r = render_camera(world, 0.0, np.eye(4), T_BASE_CAM, K, W, H)
    face = r.material == Material.BUILDING
    # the face x = 10 spans y in [-3, 3], z in [0, 4]: pixels with |u - cx| < 3 f / 10 and v - cy in (-2.5, 1.5) f/10
    assert face[int(K[1, 2]), int(K[0, 2])]
    np.testing.assert_allclose(r.depth[face], 10.0, rtol=1e-6)
    u_half = 3.0 * F / 10.0
    assert face.any(0).sum() == np.sum(np.abs(np.arange(W) - K[0, 2]) <= u_half)


def test_a_box_seen_from_a_yawed_and_moved_ego_keeps_its_depth():
    world = World.from_boxes([[10.0, 17.0, 0.0]], [[30.0, 19.0, 4.0]])
    facing_left = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # ego x axis along world +y
    T_world_base = make_transform(facing_left, [15.0, 5.0, 0.0])
    r = render_camera(world, 0.0, T_world_base, T_BASE_CAM, K, W, H)
    face = r.material == Material.BUILDING
    np.testing.assert_allclose(r.depth[face], 12.0, rtol=1e-6)  # the face y = 17 is 12 m ahead of y = 5


def test_a_moving_box_is_dynamic_and_moves_between_instants():
    world = World.from_boxes([[20.0, -1.0, 0.2]], [[24.0, 1.0, 1.5]], velocity=[10.0],
                             material=[Material.CAR_BODY])
    r0 = render_camera(world, 0.0, np.eye(4), T_BASE_CAM, K, W, H)
    r1 = render_camera(world, 0.05, np.eye(4), T_BASE_CAM, K, W, H)
    car = r0.material == Material.CAR_BODY
    assert car.any() and np.array_equal(r0.dynamic, car)
    np.testing.assert_allclose(r0.depth[car].min(), 20.0, rtol=1e-6)
    np.testing.assert_allclose(r1.depth[r1.material == Material.CAR_BODY].min(), 20.5, rtol=1e-6)


def test_camera_rendering_and_arbitrary_rays_agree():
    world = World.from_boxes([[8.0, -2.0, 0.0], [12.0, 1.0, 0.0]], [[9.0, 0.5, 2.0], [15.0, 4.0, 6.0]])
    r = render_camera(world, 0.0, np.eye(4), T_BASE_CAM, K, W, H)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d_cam = np.stack([(u - K[0, 2]) / F, (v - K[1, 2]) / F, np.ones_like(u)], -1).reshape(-1, 3)
    t, material, _ = cast_rays(world, 0.0, T_BASE_CAM[:3, 3], d_cam @ T_BASE_CAM[:3, :3].T)
    np.testing.assert_allclose(t.reshape(H, W), r.depth, rtol=1e-6)
    assert np.array_equal(material.reshape(H, W), r.material)


def test_ego_body_is_seen_at_the_bottom_border_of_the_front_and_back_cameras_only():
    rig = surroundsim_rig(160, 96)
    for cam in rig:
        r = render_camera(_empty_world(), 0.0, np.eye(4), cam.T_base_cam, cam.K, cam.width, cam.height,
                          EGO_BODY_LO, EGO_BODY_HI)
        if cam.name in ('front', 'back'):
            assert not r.self_mask[-1].any(), f'{cam.name}: the bottom row should see the ego body'
            assert r.self_mask[: cam.height // 2].all(), f'{cam.name}: the top half should see the scene'
            assert np.all(r.depth[~r.self_mask] == 0)
        else:
            assert r.self_mask.all(), f'{cam.name} should not see the ego body'

import cv2
import numpy as np

from surround_depth_train.visualize import (colorize_depth, colorize_error, depth_colour_bar, mosaic,
                                            overlay_sparse_depth, save_png)


def test_near_depth_is_brighter_than_far_and_invalid_is_black():
    rgb = colorize_depth(np.array([[2.0, 20.0, 0.0, np.nan]]), 1.0, 80.0)
    assert rgb[0, 0].sum() > rgb[0, 1].sum()
    assert (rgb[0, 2] == 0).all() and (rgb[0, 3] == 0).all()


def test_sparse_overlay_only_touches_pixels_with_returns():
    image = np.full((10, 10, 3), 50, np.uint8)
    sparse = np.zeros((10, 10), np.float32)
    sparse[4, 7] = 5.0
    out = overlay_sparse_depth(image, sparse, radius=0)
    changed = np.argwhere((out != image).any(axis=-1))
    assert changed.tolist() == [[4, 7]]


def test_mosaic_tiles_rows_and_png_round_trips(tmp_path):
    a = np.zeros((4, 6, 3), np.uint8)
    b = np.full((8, 12), 200, np.uint8)  # resized to the first tile, grey to RGB
    grid = mosaic([[a, a, a], [b]], pad=1)
    assert grid.shape == (2 * 4 + 1, 3 * 6 + 2, 3)
    save_png(tmp_path / 'g.png', grid)
    back = cv2.imread(str(tmp_path / 'g.png'))[..., ::-1]
    assert np.array_equal(back, grid)


def test_larger_error_is_brighter_saturates_at_max_and_invalid_is_black():
    rgb = colorize_error(np.array([[0.0, 0.2, 0.5, 2.0, np.nan, 0.1]]), max_error=0.5,
                         valid=np.array([[True, True, True, True, True, False]]))
    sums = rgb[0].astype(int).sum(axis=1)
    assert sums[0] < sums[1] < sums[2] and (rgb[0, 2] == rgb[0, 3]).all()
    assert (rgb[0, 4] == 0).all() and (rgb[0, 5] == 0).all()


def test_the_colour_bar_runs_near_to_far_in_the_depth_colours_with_labels_in_metres():
    bar = depth_colour_bar(400, 0.5, 80.0)
    assert bar.shape == (34, 400, 3) and bar.dtype == np.uint8
    strip = bar[2]
    near, far = colorize_depth(np.array([[0.5, 80.0]]), 0.5, 80.0)[0]
    assert np.abs(strip[0].astype(int) - near).max() <= 2 and np.abs(strip[-1].astype(int) - far).max() <= 2
    labels = bar[20:]
    assert (labels < 128).any()  # the tick labels are drawn (dark text on white)

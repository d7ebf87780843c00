"""The tile-atlas renderer against gymnasium's own renderer, and frame resizing."""

import numpy as np
import pytest

from rss_world.envs.render import render_grid, render_gym, resize_frame


@pytest.mark.parametrize("cell_px", [16, 8, 10])
def test_render_grid_is_pixel_identical_to_gymnasium(cell_px, render_cases):
    for desc, rc, facing in render_cases(60, cell_px, sizes=range(2, 11)):
        assert np.array_equal(render_grid(desc, rc, cell_px, facing), render_gym(desc, rc, cell_px, facing))


def test_resize_frame_block_mean():
    native = np.zeros((128, 128, 3), dtype=np.uint8)
    native[:2, :2] = 255
    out = resize_frame(native, 2, 16)
    assert out.shape == (32, 32, 3) and out[0, 0, 0] == 64 and out[1, 1, 0] == 0

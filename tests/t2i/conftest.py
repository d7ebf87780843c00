"""A tiny text-to-image config for the t2i tests: 32x32 pixels in 16 patches, one SD3 block, 16-wide text."""

import pytest

from rss_world.t2i import T2IConfig, TextEncoderConfig
from rss_world.variants.sd3_base import pixel_config


def tiny_t2i_config(blocks: int = 1) -> T2IConfig:
    return T2IConfig(text=TextEncoderConfig(width=16, layers=1, heads=2, out_dim=16, pooled_dim=16),
                     transformer=pixel_config(patch_size=8, num_layers=blocks, heads=2, head_dim=8, text_dim=16,
                                              pooled_dim=16))


@pytest.fixture
def tiny_cfg() -> T2IConfig:
    return tiny_t2i_config()


@pytest.fixture
def three_block_cfg() -> T2IConfig:
    """Three transformer blocks: room for a middle block and several blocks in the study tests."""
    return tiny_t2i_config(blocks=3)

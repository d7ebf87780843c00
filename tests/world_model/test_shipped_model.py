"""The shipped checkpoint loads with one call and decodes the first latent step of real test maps correctly."""

import numpy as np
import torch

from rss_world.checkpoint import load_model
from rss_world.envs.maps import find_cell, load_default_suite
from rss_world.envs.oracle import move, optimal_actions
from rss_world.envs.parser import parse_frame
from rss_world.envs.render import render_grid
from rss_world.plan import DEFAULT_CHECKPOINT


def test_shipped_model_decodes_first_step_of_test_maps():
    model = load_model(DEFAULT_CHECKPOINT)
    maps = [m for size in (3, 5, 8) for m in load_default_suite("test", sizes=[size])[:3]]
    for spec in maps:
        start = find_cell(spec.desc, "S")
        action = min(optimal_actions(spec.desc, start))
        nxt, _ = move(spec.desc, start, action)
        with torch.no_grad():
            z = model.encode(torch.from_numpy(render_grid(spec.desc, start)[None]))
            z1, _, _ = model.step(z, torch.tensor([action]))
            frames = model.to_uint8(torch.stack([model.decode(z), model.decode(z1)])).numpy()[:, 0]
        assert parse_frame(frames[0]).equals_grid(spec.desc, start), spec.id
        assert parse_frame(frames[1]).equals_grid(spec.desc, nxt), spec.id
        assert np.abs(frames[1].astype(int) - render_grid(spec.desc, nxt).astype(int)).mean() < 10

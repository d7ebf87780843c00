"""rss_world.imagined_rollouts on a tiny model: an actor's imagined episode next to the real one, and its video."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.imagination import start_frame
from rss_world.imagined_rollouts import imagine_episode, oracle_path, write_play_video


class Scripted:
    """Acts from a fixed list and records the frames it was shown."""

    def __init__(self, actions: list[int]) -> None:
        self.actions, self.seen = list(actions), []

    def act(self, obs, info=None) -> int:
        self.seen.append(obs)
        return self.actions[len(self.seen) - 1]


def test_oracle_episode_replays_a_shortest_path_in_the_real_env(tiny, map3):
    assert oracle_path(map3, (0, 0), 16) == [1, 1, 2, 2] and oracle_path(map3, (0, 0), 3) == [1, 1, 2]
    ep = imagine_episode(tiny(), map3, "oracle", horizon=16)
    assert ep.actions == [1, 1, 2, 2]
    assert len(ep.real) == len(ep.imagined) == len(ep.status) == 5
    assert ep.cells == [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
    np.testing.assert_array_equal(ep.imagined[0], start_frame(map3))  # the real start frame, encoded
    assert ep.exact(0) is True and ep.exact(5) is None


def test_actor_sees_only_imagined_frames_and_the_real_episode_ends_it(tiny, map3):
    actor = Scripted([1, 2, 2, 2, 2])  # DOWN then RIGHT: the real agent falls into the hole at (1, 1)
    ep = imagine_episode(tiny(), map3, actor, horizon=5)
    assert ep.actions == [1, 2] and ep.cells == [(0, 0), (1, 0), (1, 1)]
    for shown, imagined in zip(actor.seen, ep.imagined, strict=False):
        np.testing.assert_array_equal(shown, imagined)
    real = VisualFrozenLakeEnv(desc=map3, renderer="atlas")
    frames = [real.reset(seed=0)[0]] + [real.step(a)[0] for a in ep.actions]
    for got, want in zip(ep.real, frames, strict=True):
        np.testing.assert_array_equal(got, want)
    # the goal head fires at once: stopping on the imagined end cuts the episode after one step
    assert imagine_episode(tiny(goal=9.0), map3, "oracle", stop_on_imagined_end=True).actions == [1]


def test_play_video_has_one_frame_per_imagined_frame(tiny, tmp_path, map3):
    episodes = [imagine_episode(tiny(), map3, "oracle", horizon=16), imagine_episode(tiny(), map3, "oracle", 2)]
    assert write_play_video(episodes, tmp_path / "p.gif") == 5 + 3
    assert len(imageio.mimread(tmp_path / "p.gif")) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["p.gif"]  # written whole: no temporary file left
    with pytest.raises(ValueError, match="no frames"):
        write_play_video([], tmp_path / "q.gif")

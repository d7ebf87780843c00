"""rss_world.agent_runs: an agent trained and judged in a worker process (as ``--jobs`` runs them) matches one
trained in the calling process."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pytest
import torch

from rss_world.agent_runs import AgentJob, train_and_judge
from rss_world.envs.maps import load_default_suite
from rss_world.rl_agents import eval_maps, load_agent


def untimed(d):
    """A summary or meta without its wall-clock readings, which differ between any two runs."""
    return {k: untimed(v) if isinstance(v, dict) else v for k, v in d.items()
            if k not in ("ms_per_decision", "train_seconds")}


@pytest.mark.slow
def test_worker_process_trains_and_judges_like_the_calling_process(tmp_path, tiny):
    job = AgentJob("ppo", "wm", 3, tiny().eval(), load_default_suite("train", [3, 4, 5, 6])[:16], eval_maps([3, 4], 4),
                   steps=64, n_envs=4, train_max_steps=24, reencode_every=0, eval_seed=0, out=tmp_path / "here.zip")
    threads = torch.get_num_threads()
    path, meta, here = train_and_judge(job)
    assert torch.get_num_threads() == threads  # trained on one thread, the caller's count restored
    assert path == tmp_path / "here.zip" and path.exists() and meta["steps"] == 512 and meta["pad_to"] == 6
    assert set(here) >= {"success_rate", "sampled", "imagined"} and here["imagined"]["episodes"] == 4
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        path2, meta2, there = pool.submit(train_and_judge, replace(job, out=tmp_path / "there")).result()
    assert path2 == tmp_path / "there.zip"
    (agent, saved_meta), (agent2, _) = load_agent(path), load_agent(path2)  # the saved agents: the same weights
    assert untimed(saved_meta) == untimed(meta)
    weights, weights2 = agent.policy.state_dict(), agent2.policy.state_dict()
    assert weights.keys() == weights2.keys() and all(torch.equal(v, weights2[k]) for k, v in weights.items())
    assert untimed(meta2) == untimed(meta)
    assert untimed(there) == untimed(here)

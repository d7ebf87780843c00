"""experiments/agent_in_the_loop.py: an agent trained and judged in a worker process (``--jobs``) matches one
trained in the calling process."""

import multiprocessing as mp
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
import agent_in_the_loop as ail  # noqa: E402

from rss_world import agent as ag  # noqa: E402
from rss_world.envs.maps import load_default_suite  # noqa: E402
from rss_world.world_model import WorldModel, WorldModelConfig  # noqa: E402


def untimed(d):
    """A summary or meta without its wall-clock readings, which differ between any two runs."""
    return {k: untimed(v) if isinstance(v, dict) else v for k, v in d.items()
            if k not in ("ms_per_decision", "train_seconds")}


def test_worker_process_trains_and_judges_like_the_calling_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # agents are saved under ./outputs/agents
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(dim=32, heads=2, enc_layers=1, dec_layers=1, gate_iters=1, rank=4)).eval()
    settings = {"steps": 64, "n_envs": 4, "train_max_steps": 24, "reencode_every": 0, "eval_seed": 0,
                "suffix": "_t"}
    work = ("ppo", "wm", 3, model, load_default_suite("train", [3, 4, 5, 6])[:16], ag.eval_maps([3, 4], 4), settings)
    threads = torch.get_num_threads()
    path, meta, here = ail.train_and_judge(work)
    torch.set_num_threads(threads)
    assert path == Path("outputs/agents/ppo_wm_s3_t.zip") and path.exists() and meta["steps"] >= 64
    assert set(here) >= {"success_rate", "sampled", "imagined"} and here["imagined"]["episodes"] == 4
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        _, meta2, there = pool.submit(ail.train_and_judge, work).result()
    assert untimed(meta2) == untimed(meta)
    assert untimed(there) == untimed(here)

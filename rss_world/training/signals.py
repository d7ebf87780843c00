"""Training signals from what any environment gives: frames, actions, rewards and terminations.

Nothing here reads a map, a tile grid, an agent position or an oracle (``tests/test_data_contract.py`` guards it).
What the losses need beyond the shard's arrays is derived from the pixels:

* the grid cells whose pixels change between consecutive frames (the batch's ``changed``, made by
  :func:`rss_world.data.sample_windows`). In a grid world these are where the agent was and where it went, so they
  locate the agent and, at a rewarded or terminating step, the goal or the hole it entered;
* :func:`rare_cells`: cells that differ from the frame's most common cell (the plain floor), so that the few
  cells that matter are not drowned in the reconstruction loss.

The planning gate's per-token heads learn from these by multiple-instance losses (:func:`gate_signal_losses`), and
its transition kernels and action choice from the recorded actions of episodes that reached a reward
(:func:`demo_nll`), as the paper trains its gate on the agent's actions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rss_world.world_model import patchify

NEG = -1e9  # a logit that softmax and logsumexp treat as minus infinity


def rare_cells(frames: Tensor, cell_px: int) -> Tensor:
    """``(B, T+1, H, W, 3)`` -> ``(B, T+1, N)`` bool: cells whose pixels differ from the frame's most common cell."""
    cells = patchify(frames, cell_px).float()  # (B, T+1, N, P)
    probe = torch.linspace(1.0, 2.0, cells.shape[-1], device=cells.device, dtype=torch.float64)
    key = (cells.double() * probe).sum(-1)  # (B, T+1, N): equal cells, equal keys
    common = key.mode(-1).values  # (B, T+1)
    return key != common[..., None]


def mil_positive(logits: Tensor, bag: Tensor) -> Tensor:
    """``-log P(at least one cell of the bag is positive)`` per sample (noisy-or of per-cell sigmoids)."""
    log_not = F.logsigmoid(-logits.float()).masked_fill(~bag, 0.0).sum(-1)  # log Π (1 - p)
    return -torch.log((-torch.expm1(log_not)).clamp_min(1e-6))


def mil_negative(logits: Tensor, bag: Tensor) -> Tensor:
    """Mean BCE towards 0 over the cells of the bag, per sample."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), torch.zeros_like(logits, dtype=torch.float32),
                                             reduction="none")
    return (bce * bag).sum(-1) / bag.sum(-1).clamp_min(1)


def gate_signal_losses(tl_now: Tensor, tl_next: Tensor, changed: Tensor, reward: Tensor, terminated: Tensor,
                       use: Tensor) -> dict[str, Tensor]:
    """Losses of the gate's per-token heads (goal, hole, agent) on transitions ``t -> t+1``.

    Args:
        tl_now, tl_next: per-token logits ``(M, N, 3)`` at t and t+1.
        changed: ``(M, N)`` cells that change from t to t+1.
        reward, terminated: ``(M,)`` of the transition.
        use: ``(M,)`` transitions to learn from.

    * agent: the agent is on a changed cell at t and at t+1 (softmax over tokens, probability of the changed set);
    * goal: at a rewarded step a changed cell of frame t is the goal; at other steps none of them is;
    * hole: at a step that terminates without reward a changed cell of frame t is a hole; at other steps none is.
    """
    use = use & changed.any(-1)
    zero = tl_now.new_zeros((), dtype=torch.float32)
    if not bool(use.any()):
        return {"agent": zero, "goal": zero, "hole": zero}
    tl_now, tl_next, bag = tl_now[use].float(), tl_next[use].float(), changed[use]
    reward, terminated = reward[use] > 0, terminated[use].bool()

    def in_bag(agent: Tensor) -> Tensor:
        return (agent.logsumexp(-1) - agent.masked_fill(~bag, NEG).logsumexp(-1)).mean()

    def mil(logits: Tensor, positive: Tensor) -> Tensor:
        return torch.where(positive, mil_positive(logits, bag), mil_negative(logits, bag)).mean()

    return {"agent": in_bag(tl_now[..., 2]) + in_bag(tl_next[..., 2]),
            "goal": mil(tl_now[..., 0], reward), "hole": mil(tl_now[..., 1], terminated & ~reward)}


def demo_nll(logits: Tensor, actions: Tensor, use: Tensor) -> Tensor:
    """Cross-entropy of the gate's logits ``(M, A)`` against the recorded actions ``(M,)`` where ``use``."""
    if not bool(use.any()):
        return logits.new_zeros((), dtype=torch.float32)
    return F.cross_entropy(logits[use].float(), actions[use])

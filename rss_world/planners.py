"""Planners over the :class:`~rss_world.world_model.WorldModel` API: planning in latent space (by default each
imagined frame is decoded and encoded again between latent steps; ``reencode=False``: pure latent recursion).

* :class:`GatePlanner` is the paper's mechanism: from the start frame the gate picks one expert per latent
  step, the expert index is the action, and every latent step is decoded into a frame of the visual plan. Adaptive
  halting stops the rollout when the status head says the goal is reached (or a hole is entered) or when the
  latent stops changing; the steps saved against the horizon are reported.
* :class:`SearchPlanner` is a batched best-first (or beam) search over imagined latents: each expansion
  steps all four actions of up to ``batch`` nodes in one ``step`` call, scores children with the model's
  own status heads (goal reached: done; hole: pruned), orders the frontier by ``depth + λ·(−log π)`` with
  the gate's probabilities ``π`` as a prior, and drops states seen before (per-cell distance of decoded frames,
  or per-token distance of latents, below a threshold).

Both read only the frame they are given. They never see the map, the agent cell or the frame parser: this
module imports torch, numpy, ``rss_world.nn`` and ``rss_world.world_model`` only (a test checks it).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rss_world.nn import RoutingRecord
from rss_world.world_model import CELL_TOLERANCE, NUM_ACTIONS, WorldModel, cell_errors

PLANNERS = ("gate", "search")


@dataclass
class Plan:
    """A plan imagined from one frame.

    Attributes:
        actions: planned actions (0=LEFT, 1=DOWN, 2=RIGHT, 3=UP).
        frames: ``(T + 1, H, W, 3)`` uint8 imagined frames; ``frames[0]`` is the reconstruction of the input.
            A re-encoding gate plan holds the frames it decoded on the way; other plans decode their latents on
            first read (cached, with the weights of that moment), so a controller that takes only the actions never
            runs the decoder. An array given (``Plan(frames=...)``, ``plan.frames = ...``) is kept as it is.
        halted_early: the planner stopped before its horizon (goal, hole, convergence, or search success).
        steps_saved: horizon minus planned steps.
        expansions: latent nodes expanded (the gate planner counts its steps).
        reached_goal: the model's status head says the last frame shows the agent on the goal.
        reason: why planning stopped: "goal", "hole", "converged", "horizon" or "budget".
        status: ``(T + 1, 2)`` P(goal), P(hole) along the plan.
        latents: the ``T + 1`` latents ``(N, D)`` along the plan (for trajectory plots).
        route: the gate planner's routing record (None for search).
    """

    actions: list[int]
    frames: np.ndarray
    halted_early: bool
    steps_saved: int
    expansions: int
    reached_goal: bool = False
    reason: str = "horizon"
    status: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    latents: list[Tensor] = field(default_factory=list)
    route: RoutingRecord | None = None


class _LazyFrames:
    """``frames[start:]`` of one batched decode of a plan's latents (``no_grad``, eval mode), run on the first read of
    the plan's frames or of a lazy view of their tail (:meth:`tail`), which share it."""

    def __init__(self, model: WorldModel, latents: list[Tensor], start: int = 0, shared: dict | None = None) -> None:
        self.start, self.shared = start, {"model": model, "latents": list(latents)} if shared is None else shared

    def tail(self, start: int) -> _LazyFrames:
        return _LazyFrames(self.shared["model"], [], self.start + start, self.shared)

    def get(self) -> np.ndarray:
        s = self.shared
        if "array" not in s:
            m, lat, training = s["model"], s.pop("latents"), s["model"].training
            with torch.no_grad():  # in chunks: a 1000-step plan at 32x32 decodes to gigabytes of float pixels
                s["array"] = np.concatenate([m.to_uint8(m.eval().decode(torch.stack(lat[i:i + 64]))).cpu().numpy()
                                             for i in range(0, len(lat), 64)])  # (T+1, H, W, 3)
            m.train(training)
        return s["array"][self.start:] if self.start else s["array"]


def _get_frames(plan: Plan) -> np.ndarray:
    if isinstance(f := plan.__dict__["frames"], _LazyFrames):
        f = plan.__dict__["frames"] = f.get()  # cached: later reads return the same array
    return f


# A property over the dataclass field: the generated __init__ (and ``plan.frames = ...``) store through the setter.
Plan.frames = property(_get_frames, lambda plan, f: plan.__dict__.__setitem__("frames", f), doc="See :class:`Plan`.")


@dataclass
class GatePlannerConfig:
    """Settings of :class:`GatePlanner`; the one place of their defaults (the benchmark config reads them).

    Attributes:
        horizon: most latent steps; ``None`` means ``size * size`` (longer than any shortest path).
        halt: stop early on goal / hole / convergence (adaptive halting); else always run ``horizon`` steps.
        goal_threshold: P(agent on goal) above which the goal counts as reached.
        hole_threshold: P(agent in hole) above which the plan stops (it failed).
        converge_tol: relative latent change ``|z' - z| / |z|`` below which the rollout has converged.
        reencode: after every latent step, decode the imagined frame and encode it again (default; off: pure latent
            recursion, the ablation row; ``experiments/results/open_loop_diagnosis.md``). Closed-loop decisions
            imagine one step, so it changes nothing there.
    """

    horizon: int | None = None
    halt: bool = True
    goal_threshold: float = 0.5
    hole_threshold: float = 0.5
    converge_tol: float = 1e-3
    reencode: bool = True


@dataclass
class SearchPlannerConfig:
    """Settings of :class:`SearchPlanner`; the one place of their defaults (the benchmark config reads them).

    Attributes:
        max_depth: deepest plan; ``None`` means ``size * size``.
        max_expansions: budget of expanded nodes (each expansion imagines four children).
        batch: nodes expanded together in one batched ``step`` call.
        beam_width: keep only the best this many frontier nodes (``None``: unbounded best-first search).
        prior_weight: ``λ`` in the cost ``depth + λ·(−log π)`` (0: breadth-first).
        goal_threshold: P(agent on goal) above which a child ends the search.
        hole_threshold: P(agent in hole) above which a child is pruned.
        dedupe: "frame" (max per-cell RMS difference of decoded frames, 4x4 px per cell) or "latent"
            (max per-token relative L2).
        dedupe_threshold: distance under which two states are the same.
        reencode: decode every imagined child and encode it again before expanding it (default; see
            :class:`GatePlannerConfig` and ``experiments/results/search_val.md``); its goal and hole scores read the
            stepped latent, as the heads were trained.
    """

    max_depth: int | None = None
    max_expansions: int = 400
    batch: int = 8
    beam_width: int | None = None
    prior_weight: float = 0.1
    goal_threshold: float = 0.9  # tuned on the val split (see experiments/results/planning.md)
    hole_threshold: float = 0.5
    dedupe: str = "frame"
    dedupe_threshold: float = 0.02  # tuned on the val split: at 0.05 blurred moves counted as seen, the frontier died
    reencode: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` on a setting out of range."""
        if self.dedupe not in ("frame", "latent"):
            raise ValueError(f"dedupe must be 'frame' or 'latent', got {self.dedupe!r}")
        if self.max_expansions < 1 or self.batch < 1 or (self.beam_width is not None and self.beam_width < 1):
            raise ValueError(f"max_expansions, batch and beam_width must be >= 1: {self}")
        if self.prior_weight < 0 or self.dedupe_threshold < 0:
            raise ValueError(f"prior_weight and dedupe_threshold must be >= 0: {self}")


def _to_input(model: WorldModel, frame: np.ndarray | Tensor) -> tuple[Tensor, int]:
    x = torch.as_tensor(np.asarray(frame) if not isinstance(frame, Tensor) else frame)
    if x.dim() != 3:
        raise ValueError(f"plan() takes one (H, W, 3) uint8 frame, got shape {tuple(x.shape)}")
    x = x[None].to(next(model.parameters()).device)
    return x, model.check_frames(x)


def same_frame(real: np.ndarray, imagined: np.ndarray, cell_px: int) -> bool:
    """Whether an imagined frame shows the real one: every cell within ``CELL_TOLERANCE`` (the measure training's
    validation uses)."""
    if real.shape != imagined.shape:
        return False
    return bool(cell_errors(torch.as_tensor(real), torch.as_tensor(imagined), cell_px).max() <= CELL_TOLERANCE)


class GatePlanner:
    """The paper's planner: the gate picks the expert (= action) at every latent step.

    Args:
        model: a trained world model.
        cfg: settings (defaults: :class:`GatePlannerConfig`).
    """

    name = "gate"

    def __init__(self, model: WorldModel, cfg: GatePlannerConfig | None = None) -> None:
        self.model = model
        self.cfg = cfg or GatePlannerConfig()

    @torch.no_grad()
    def plan(self, frame: np.ndarray | Tensor) -> Plan:
        """Imagine a plan from one ``(H, W, 3)`` uint8 frame."""
        m, c = self.model.eval(), self.cfg
        x, size = _to_input(m, frame)
        horizon = c.horizon if c.horizon is not None else size * size
        z = m.encode(x)  # (1, N, D)
        latents, actions, route, reason = [z[0]], [], RoutingRecord(), "horizon"
        status = [m.status(z)[0]]
        shown = [m.to_uint8(m.decode(z))[0]] if c.reencode else None  # re-encoding decodes every step anyway
        for _ in range(horizon):
            z_next, _, sel = m.step(z)
            actions.append(int(sel.action[0]))
            route.append(sel)
            st = m.status(z_next)[0]  # (2,)
            change = float((z_next - z).norm() / z.norm().clamp_min(1e-8))
            if c.reencode:
                z_next, frame = m.reencode(z_next)
                shown.append(frame[0])
            z = z_next
            latents.append(z[0])
            status.append(st)
            if c.halt:
                if st[0] > c.goal_threshold:
                    reason = "goal"
                elif st[1] > c.hole_threshold:
                    reason = "hole"
                elif change < c.converge_tol:
                    reason = "converged"
                if reason != "horizon":
                    break
        st_all = torch.stack(status).float().cpu().numpy()
        frames = _LazyFrames(m, latents) if shown is None else torch.stack(shown).cpu().numpy()
        return Plan(actions=actions, frames=frames, halted_early=len(actions) < horizon,
                    steps_saved=horizon - len(actions), expansions=len(actions),
                    reached_goal=bool(st_all[-1, 0] > c.goal_threshold), reason=reason, status=st_all,
                    latents=latents, route=route)

    @torch.no_grad()
    def decide(self, frame: np.ndarray | Tensor) -> Plan:
        """One closed-loop decision: the gate's expert (the action) at the encoded frame and the one latent step it
        imagines. A closed-loop controller uses only the first action of a plan, so the rest is not imagined."""
        m = self.model.eval()
        x, _ = _to_input(m, frame)
        z = m.encode(x)
        z_next, _, sel = m.step(z)
        status = torch.cat([m.status(z), m.status(z_next)]).float().cpu().numpy()
        return Plan(actions=[int(sel.action[0])], frames=_LazyFrames(m, [z[0], z_next[0]]), halted_early=False,
                    steps_saved=0, expansions=1, reached_goal=bool(status[-1, 0] > self.cfg.goal_threshold),
                    reason="decision", status=status, latents=[z[0], z_next[0]])


@dataclass
class _Node:
    z: Tensor  # (N, D)
    key: Tensor  # (K,) what dedupe compares
    depth: int
    nll: float  # −Σ log π of the actions on the path
    parent: int  # index into the node list (-1 for the root)
    action: int
    status: Tensor  # (2,)


class SearchPlanner:
    """Best-first / beam search over imagined latents, scored by the model's own heads.

    Args:
        model: a trained world model.
        cfg: settings (defaults: :class:`SearchPlannerConfig`).
    """

    name = "search"

    def __init__(self, model: WorldModel, cfg: SearchPlannerConfig | None = None) -> None:
        self.model = model
        self.cfg = cfg or SearchPlannerConfig()
        self.cfg.validate()
        self._ahead: Plan | None = None  # the rest of the last plan that reached the goal (see decide)

    def decide(self, frame: np.ndarray | Tensor) -> Plan:
        """One closed-loop decision, reusing the last plan while the world follows it (receding-horizon control
        with plan reuse): when the real frame matches, cell by cell, the frame the last goal-reaching plan imagined
        for this step, the rest of that plan is returned without a new search; otherwise (or without such a plan)
        it searches again."""
        ahead, self._ahead = self._ahead, None
        px = self.model.cfg.cell_px
        if ahead is not None and ahead.actions and same_frame(np.asarray(frame), ahead.frames[0], px):
            plan = ahead
        else:
            plan = self.plan(frame)
        if plan.reason == "goal" and len(plan.actions) > 1:
            f = plan.__dict__["frames"]  # the tail without decoding: a lazy view shares the plan's one decode
            self._ahead = Plan(actions=plan.actions[1:], frames=f.tail(1) if isinstance(f, _LazyFrames) else f[1:],
                               halted_early=plan.halted_early, steps_saved=plan.steps_saved, expansions=0,
                               reached_goal=True, reason="goal", status=plan.status[1:], latents=plan.latents[1:])
        return plan

    def _keys(self, z: Tensor) -> Tensor:
        """Dedupe keys ``(B, N, K)``: each cell of the decoded frame pooled to 4x4 pixels, or scaled tokens."""
        if self.cfg.dedupe == "latent":
            return z / z.norm(dim=-1, keepdim=True).mean(1, keepdim=True).clamp_min(1e-8)  # (B, N, D)
        f = self.model.decode(z).permute(0, 3, 1, 2)  # (B, 3, H, W)
        b, n = f.shape[0], math.isqrt(z.shape[1])
        f = F.adaptive_avg_pool2d(f, (4 * n, 4 * n)).view(b, 3, n, 4, n, 4)
        return f.permute(0, 2, 4, 1, 3, 5).reshape(b, n * n, 48)  # (B, N, 48)

    def _dist(self, keys: Tensor, visited: Tensor) -> Tensor:
        """``(B, V)`` distances: max over cells (tokens) of the per-cell RMS (per-token L2) difference."""
        sq = (keys.pow(2).sum(-1)[:, None] + visited.pow(2).sum(-1)[None]
              - 2 * torch.einsum("bnk,vnk->bvn", keys, visited)).clamp_min(0)  # (B, V, N)
        if self.cfg.dedupe == "frame":
            sq = sq / keys.shape[-1]  # an agent move is ~0.11 RMS on real renders
        return sq.sqrt().amax(-1)

    @torch.no_grad()
    def plan(self, frame: np.ndarray | Tensor) -> Plan:
        """Search for a plan to the goal from one ``(H, W, 3)`` uint8 frame."""
        m, c = self.model.eval(), self.cfg
        x, size = _to_input(m, frame)
        max_depth = c.max_depth if c.max_depth is not None else size * size
        z0 = m.encode(x)
        nodes = [_Node(z0[0], self._keys(z0)[0], 0, 0.0, -1, -1, m.status(z0)[0])]
        visited = nodes[0].key[None]
        frontier: list[tuple[float, int]] = [(0.0, 0)]
        expansions, goal, reason = 0, None, "budget"
        while frontier and expansions < c.max_expansions and goal is None:
            take = min(c.batch, c.max_expansions - expansions)
            batch = [heapq.heappop(frontier)[1] for _ in range(min(take, len(frontier)))]
            batch = [i for i in batch if nodes[i].depth < max_depth]
            if not batch:
                continue
            expansions += len(batch)
            z = torch.stack([nodes[i].z for i in batch])  # (b, N, D)
            zz = z.repeat_interleave(NUM_ACTIONS, 0)  # (4b, N, D)
            acts = torch.arange(NUM_ACTIONS, device=z.device).repeat(len(batch))
            prior = m.policy(z).clamp_min(1e-8).log()  # (b, 4)
            children, _, _ = m.step(zz, acts)
            status = m.status(children)  # (4b, 2): the heads read stepped latents, as they were trained
            if c.reencode:
                children, _ = m.reencode(children)
            keys = self._keys(children)
            fresh = ~(self._dist(keys, visited) < c.dedupe_threshold).any(1)  # (4b,) not seen before
            keep = (status[:, 1] <= c.hole_threshold) & fresh
            best_goal, added = None, []
            for j in keep.nonzero().flatten().tolist():
                if added and bool((self._dist(keys[j:j + 1], keys[added]) < c.dedupe_threshold).any()):
                    continue  # a sibling in this batch reached the same state
                added.append(j)
                parent, a = nodes[batch[j // NUM_ACTIONS]], j % NUM_ACTIONS
                node = _Node(children[j], keys[j], parent.depth + 1, parent.nll - float(prior[j // NUM_ACTIONS, a]),
                             batch[j // NUM_ACTIONS], a, status[j])
                nodes.append(node)
                cost = node.depth + c.prior_weight * node.nll
                if status[j, 0] > c.goal_threshold:
                    if best_goal is None or cost < best_goal[0]:
                        best_goal = (cost, len(nodes) - 1)
                else:
                    heapq.heappush(frontier, (cost, len(nodes) - 1))
            if added:
                visited = torch.cat([visited, keys[added]])
            if best_goal is not None:
                goal, reason = best_goal[1], "goal"
            if c.beam_width is not None and len(frontier) > c.beam_width:
                frontier = heapq.nsmallest(c.beam_width, frontier)
                heapq.heapify(frontier)
        if goal is None:
            # No goal within the budget: return the path to the deepest node, most likely under the gate's
            # prior, so a closed-loop controller still gets a sensible first action.
            return self._fallback(nodes, max_depth, expansions, reason if frontier else "horizon")
        return self._path_plan(nodes, goal, max_depth, expansions, reason)

    def _path(self, nodes: list[_Node], i: int) -> list[int]:
        path = []
        while i >= 0:
            path.append(i)
            i = nodes[i].parent
        return path[::-1]

    def _path_plan(self, nodes: list[_Node], i: int, max_depth: int, expansions: int, reason: str) -> Plan:
        idx = self._path(nodes, i)
        latents = [nodes[k].z for k in idx]
        status = torch.stack([nodes[k].status for k in idx]).float().cpu().numpy()
        actions = [nodes[k].action for k in idx[1:]]
        return Plan(actions=actions, frames=_LazyFrames(self.model, latents), halted_early=len(actions) < max_depth,
                    steps_saved=max_depth - len(actions), expansions=expansions,
                    reached_goal=reason == "goal", reason=reason, status=status, latents=latents)

    def _fallback(self, nodes: list[_Node], max_depth: int, expansions: int, reason: str) -> Plan:
        best = min(range(len(nodes)),
                   key=lambda k: (-nodes[k].depth, nodes[k].nll) if math.isfinite(nodes[k].nll) else (0, math.inf))
        plan = self._path_plan(nodes, best, max_depth, expansions, reason)
        if not plan.actions:  # nothing survived the first expansion: take the gate's choice
            m, z = self.model, nodes[0].z[None]
            plan.actions = [int(m.policy(z)[0].argmax())]
            z1, _, _ = m.step(z, torch.tensor(plan.actions, device=z.device))
            plan.status = np.concatenate([plan.status, m.status(z1).float().cpu().numpy()])
            plan.latents.append((m.reencode(z1)[0] if self.cfg.reencode else z1)[0])
            plan.frames = _LazyFrames(m, plan.latents)
            plan.steps_saved = max_depth - 1
        return plan


def make_planner(name: str, model: WorldModel, **kwargs) -> GatePlanner | SearchPlanner:
    """Build a planner by name (``"gate"`` or ``"search"``) with config overrides as keyword arguments."""
    if name == "gate":
        return GatePlanner(model, GatePlannerConfig(**kwargs))
    if name == "search":
        return SearchPlanner(model, SearchPlannerConfig(**kwargs))
    raise ValueError(f"unknown planner {name!r}, expected one of {PLANNERS}")

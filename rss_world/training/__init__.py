"""Training: one accelerate loop and what each model plugs into it.

* :mod:`~rss_world.training.loop`: the loop (resume, NaN stop, trackers + JSONL log, progress bar).
* :mod:`~rss_world.training.config`: the world-model recipe's settings (:class:`TrainConfig`, :class:`TrainRecipe`).
* :mod:`~rss_world.training.world_model`: stage 1, the world model's window losses and validation; :func:`train`.
* :mod:`~rss_world.training.gate`: stage 2, the planning gate on the frozen model's latents.
* :mod:`~rss_world.training.recipe`: the FrozenLake recipe end to end (data, model, both stages).

The DiT/SD3 adapters train in the same loop from :mod:`rss_world.variants.training`.
"""

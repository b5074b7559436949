"""First-Block Cache: on a step whose first block changed little, reuse the other blocks' work.

Every step runs the transformer's first double-stream block; when the mean absolute change of
its residual since the last fully computed step, relative to that step's residual, is at most
`threshold`, the remaining double- and single-stream blocks are skipped and their residual from
the last computed step is added instead. This is diffusers' own hook
(`diffusers.hooks.apply_first_block_cache`), which knows `FluxTransformer2DModel`'s two block
kinds: it keeps the image and text streams' residuals apart across the double-to-single
boundary, so no loop of our own is needed.

Its state is per sampling run: `cached_velocity` clears it, and keeps one state per number of
rows (a guided step of 2B rows and a conditional-only step of B rows are never compared).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fluxmusic_cli.engine.sampling import VelocityFn


def enable(model, threshold: float) -> None:
    """Install the hook on `model` (a `FluxTransformer2DModel`) with `threshold`; idempotent."""
    from diffusers.hooks import FirstBlockCacheConfig

    config = getattr(model, "_cache_config", None)
    if isinstance(config, FirstBlockCacheConfig) and config.threshold == threshold:
        return
    if config is not None:
        model.disable_cache()
    model.enable_cache(FirstBlockCacheConfig(threshold=threshold))


def disable(model) -> None:
    """Remove the hook, if a run installed it: a model kept for later runs (a server's) must
    not make a run without the cache ask for one."""
    if getattr(model, "_cache_config", None) is not None:
        model.disable_cache()


def cached_velocity(model, velocity: VelocityFn, threshold: float) -> VelocityFn:
    """`velocity` with the first-block cache on `model`, starting from an empty cache."""
    from diffusers.hooks import HookRegistry

    enable(model, threshold)
    HookRegistry.check_if_exists_or_initialize(model).reset_stateful_hooks()

    def cached(x, t):
        with model.cache_context(f"rows-{x.shape[0]}"):
            return velocity(x, t)

    return cached

"""Interventions on the residual stream at one decoder block's output.

Each is a context manager that registers one PyTorch forward hook on the
Hugging Face decoder layer ℓ (``extract.model.decoder_layers(model)[ℓ]``) and
removes exactly that hook on exit, whatever else is hooked. The hook rewrites
the block's output h (every position of every row) as

- steering:  h ← h + α·σ_ℓ·u          (u a unit direction, σ_ℓ a scale)
- erasure:   h ← eraser(h)            (e.g. a fitted LEACE eraser; optionally at masked positions only)
- patching:  h[p] ← h_src[p]          (p in a position mask; activation patching)

The edits themselves (``steer_fn``, ``erase_fn``, ``patch_fn``: functions of h) are
also applied directly by the prefix-reusing explain path (:mod:`extract.prefix`).

The same hook serves every backend: nnsight and the TransformerLens bridge run
the same Hugging Face modules, so a hook on the decoder layer fires under all three.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch


def _decoder_layer(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    from latent_bias_probe.extract.model import decoder_layers

    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} out of range: the model has {len(layers)} decoder layers")
    return layers[layer]


@contextlib.contextmanager
def edit_block_output(model: torch.nn.Module, layer: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the output h of decoder block ``layer`` by ``fn(h)`` inside the block."""

    def hook(module, inputs, output):
        if isinstance(output, (tuple, list)):
            return (fn(output[0]),) + tuple(output[1:])
        return fn(output)

    handle = _decoder_layer(model, layer).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def steer_fn(direction: np.ndarray, scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``h ↦ h + scale · direction/‖direction‖`` at every position (``ValueError`` for a zero direction)."""
    u = torch.as_tensor(np.asarray(direction, dtype=np.float32))
    norm = float(torch.linalg.vector_norm(u))
    if norm == 0:
        raise ValueError("steering direction is zero")
    u = u / norm

    def add(h: torch.Tensor) -> torch.Tensor:
        return h + (scale * u).to(device=h.device, dtype=h.dtype)

    return add


def steer(model: torch.nn.Module, layer: int, direction: np.ndarray, scale: float):
    """Add ``scale · direction/‖direction‖`` to every position of block ``layer``'s output."""
    return edit_block_output(model, layer, steer_fn(direction, scale))


def erase_fn(eraser: Callable[[torch.Tensor], torch.Tensor], where: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``h ↦ eraser(h)`` (computed in float32) at every position, or only where the ``(B, T)`` mask ``where`` is true."""

    placed: dict[torch.device, Callable[[torch.Tensor], torch.Tensor]] = {}

    def on(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        # layers may sit on different devices (device_map): keep one copy of the eraser per device
        if device not in placed:
            placed[device] = _to_device(eraser, device)
        return placed[device]

    def apply(h: torch.Tensor) -> torch.Tensor:
        if where is None:
            return on(h.device)(h.float()).to(h.dtype)
        mask = where.to(h.device)
        out = h.clone()
        out[mask] = on(h.device)(h[mask].float()).to(h.dtype)
        return out

    return apply


def erase(model: torch.nn.Module, layer: int, eraser: Callable[[torch.Tensor], torch.Tensor]):
    """Apply ``eraser`` (float32) to every position of block ``layer``'s output."""
    return edit_block_output(model, layer, erase_fn(eraser))


def patch_fn(source: torch.Tensor, where: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``h ↦ h`` with the positions of the ``(B, T)`` mask ``where`` taken from ``source`` ``(B, T, d)`` (activation patching)."""

    def apply(h: torch.Tensor) -> torch.Tensor:
        mask = where.to(h.device)
        out = h.clone()
        out[mask] = source.to(device=h.device, dtype=h.dtype)[mask]
        return out

    return apply


def _to_device(eraser, device: torch.device):
    """``eraser`` with its tensors on ``device`` (a dataclass of tensors, like LEACE's, or anything with ``.to``)."""
    import dataclasses

    if dataclasses.is_dataclass(eraser):
        moved = {f.name: getattr(eraser, f.name) for f in dataclasses.fields(eraser)}
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()}
        return dataclasses.replace(eraser, **moved)
    if hasattr(eraser, "to"):
        return eraser.to(device)
    return eraser


class RandomSubspaceEraser:
    """Erase ``rank`` random orthonormal directions around a mean: x ← x − (x − μ)QQᵀ.

    The control for LEACE: same number of directions, chosen without the concept.
    """

    def __init__(self, d: int, rank: int, mean: torch.Tensor, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d, max(rank, 1), generator=gen))
        self.q = q[:, :rank]
        self.mean = mean.float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        delta = x - self.mean.to(x.device)
        return x - (delta @ self.q.to(x.device)) @ self.q.T.to(x.device)

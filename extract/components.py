"""Component activations and their gradients, through each backend's own hooks.

A *component* of decoder block ℓ is its attention output, its MLP output, or one
attention head's output: the input of the attention's output projection
(``o_proj``), ``(B, T, H·d_head)``, split into ``H`` slices of ``d_head``. Since the
output projection is linear, the attention output's change is ``W_O`` times the
change of that input, so everything the attention writes is seen through the heads.

:func:`capture_components` runs one left-padded batch and returns, per requested
layer, the ``o_proj`` input ``z`` and the MLP output ``m`` at every position, P(Yes)
at the last position, and with ``grad=True`` the gradients of Σ_rows P(Yes) with
respect to both (each row's P(Yes) depends on its own row only, so row b's
gradient is ∂P_b/∂(activations of b)). How it is read depends on the runner:

- ``hf``: a forward pre-hook on ``o_proj`` and a forward hook on the MLP keep the
  tensors; ``torch.autograd.grad`` gives their gradients;
- ``transformer_lens``: the bridge's hook points ``blocks.{l}.attn.hook_z`` and
  ``blocks.{l}.mlp.hook_out`` in ``run_with_hooks``; ``torch.autograd.grad``;
- ``nnsight``: ``self_attn.o_proj.input`` and ``mlp.output`` saved in the trace, and
  their ``.grad`` read inside nnsight's backward trace (``with metric.backward():``).

Parameters get no gradient: they are frozen for the call (and restored), and the
input embeddings' output is made to require a gradient, so autograd tracks only
the activations. Activations come back detached, float32, on the CPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .model import decoder_layers
from .sites import first_tensor, submodule_name

#: attribute names of the attention's output projection, tried in order (``o`` is the TransformerLens bridge's)
OUT_PROJ_NAMES = ("o_proj", "out_proj", "dense", "c_proj", "o")


@dataclass
class ComponentBatch:
    """One batch's component activations (and gradients), every position, float32 on the CPU."""

    z: dict[int, torch.Tensor]  # layer -> (B, T, H*d_head): o_proj input
    mlp: dict[int, torch.Tensor]  # layer -> (B, T, d): MLP output
    attention_mask: torch.Tensor  # (B, T), left padded
    p_yes: np.ndarray  # (B,)
    grad_z: dict[int, torch.Tensor] | None = None
    grad_mlp: dict[int, torch.Tensor] | None = None


def out_proj(attn: torch.nn.Module) -> torch.nn.Module:
    """The output projection of an attention module (``o_proj`` on Llama/Gemma)."""
    for name in OUT_PROJ_NAMES:
        module = getattr(attn, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ValueError(f"{type(attn).__name__} has no output projection ({' / '.join(OUT_PROJ_NAMES)})")


def component_modules(model: torch.nn.Module, layer: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(output projection, MLP)`` modules of decoder block ``layer`` (looked up now: a bridge may have replaced them)."""
    block = decoder_layers(model)[layer]
    attn = getattr(block, submodule_name(block, "attn_out"))
    return out_proj(attn), getattr(block, submodule_name(block, "mlp_out"))


def n_heads(model: torch.nn.Module) -> int:
    """Attention (query) heads per block."""
    cfg = model.config
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return int(text.num_attention_heads)


@contextlib.contextmanager
def activation_grads(model: torch.nn.Module) -> Iterator[None]:
    """Freeze the parameters and make the input embeddings' output require a gradient (restored on exit)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)

    def leaf(module, inputs, output):
        return output.detach().requires_grad_(True)

    handle = model.get_input_embeddings().register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            yield
    finally:
        handle.remove()
        for p in params:
            p.requires_grad_(True)


def _p_yes(runner, logits: torch.Tensor) -> torch.Tensor:
    """P(Yes) as :func:`extract.scoring.score_logits` computes it, differentiable (it detaches)."""
    z = logits.to(torch.float32)
    y = torch.as_tensor(list(runner.yes_ids), dtype=torch.long, device=z.device)
    n = torch.as_tensor(list(runner.no_ids), dtype=torch.long, device=z.device)
    return torch.sigmoid(torch.logsumexp(z.index_select(1, y), dim=1) - torch.logsumexp(z.index_select(1, n), dim=1))


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float32)


def capture_components(runner, texts: Sequence[str], layers: Sequence[int], grad: bool = False) -> ComponentBatch:
    """Every position of ``layers``' ``o_proj`` input and MLP output (and with ``grad`` their ∂ΣP(Yes)) for one batch."""
    layers = sorted({int(x) for x in layers})
    batch = runner.encode(list(texts))
    run = {"hf": _capture_hf, "transformer_lens": _capture_tl, "nnsight": _capture_nnsight}.get(runner.backend, _capture_hf)
    if grad:
        with activation_grads(runner.model):
            z, mlp, p, gz, gm = run(runner, batch, layers, True)
    else:
        with torch.inference_mode():
            z, mlp, p, gz, gm = run(runner, batch, layers, False)
    return ComponentBatch(
        {l: _cpu(z[l]) for l in layers}, {l: _cpu(mlp[l]) for l in layers}, batch["attention_mask"].cpu(),
        p.detach().cpu().numpy().astype(np.float64),
        {l: _cpu(gz[l]) for l in layers} if grad else None, {l: _cpu(gm[l]) for l in layers} if grad else None,
    )


def _grads(p: torch.Tensor, z: dict, mlp: dict, layers) -> tuple[dict, dict]:
    tensors = [z[l] for l in layers] + [mlp[l] for l in layers]
    got = torch.autograd.grad(p.sum(), tensors, allow_unused=True)
    got = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, got)]
    return dict(zip(layers, got[: len(layers)])), dict(zip(layers, got[len(layers):]))


def _capture_hf(runner, batch, layers, grad: bool):
    z, mlp, handles = {}, {}, []

    def keep_in(layer):
        def pre(module, args):
            z[layer] = args[0]

        return pre

    def keep_out(layer):
        def hook(module, inputs, output):
            mlp[layer] = first_tensor(output)

        return hook

    try:
        for layer in layers:
            proj, mlp_module = component_modules(runner.model, layer)
            handles.append(proj.register_forward_pre_hook(keep_in(layer)))
            handles.append(mlp_module.register_forward_hook(keep_out(layer)))
        logits = runner.model(**runner._model_kwargs(batch)).logits[:, -1, :]
    finally:
        for h in handles:
            h.remove()
    p = _p_yes(runner, logits)
    gz, gm = _grads(p, z, mlp, layers) if grad else (None, None)
    return z, mlp, p, gz, gm


def _capture_tl(runner, batch, layers, grad: bool):
    z, mlp = {}, {}

    def keep(store, layer):
        def hook(activation, hook):
            # the bridge passes on what a hook returns; the tensor it handed in is not on the gradient's path
            store[layer] = activation.clone()
            return store[layer]

        return hook

    hooks = [(f"blocks.{l}.attn.hook_z", keep(z, l)) for l in layers]
    hooks += [(f"blocks.{l}.mlp.hook_out", keep(mlp, l)) for l in layers]
    kwargs = runner._model_kwargs(batch)
    input_ids = kwargs.pop("input_ids")
    logits = runner.bridge.run_with_hooks(input_ids, fwd_hooks=hooks, return_type="logits", **kwargs)[:, -1, :]
    p = _p_yes(runner, logits)
    gz, gm = _grads(p, z, mlp, layers) if grad else (None, None)
    flat = {l: t.flatten(2) for l, t in z.items()}  # (B, T, H, d_head) -> (B, T, H*d_head)
    return flat, mlp, p, ({l: g.flatten(2) for l, g in gz.items()} if grad else None), gm


def _capture_nnsight(runner, batch, layers, grad: bool):
    z, mlp, gz, gm, box = {}, {}, {}, {}, {}
    envoys = runner._layer_envoys
    with runner.nn_model.trace(**runner._model_kwargs(batch)):
        for layer in layers:
            attn = runner._sub_envoy(layer, "attn_out")
            z[layer] = out_proj_envoy(attn).input.save()
            mlp[layer] = runner._sub_envoy(layer, "mlp_out").output.save()
        p = _p_yes(runner, runner.nn_model.output.logits[:, -1, :])
        box["p"] = p.save()
        if grad:
            with p.sum().backward():
                for layer in reversed(layers):  # gradients arrive in reverse forward order
                    gm[layer] = mlp[layer].grad.save()
                    gz[layer] = z[layer].grad.save()
    del envoys
    return z, {l: first_tensor(mlp[l]) for l in layers}, box["p"], (gz if grad else None), (gm if grad else None)


def out_proj_envoy(attn_envoy):
    """The nnsight envoy of an attention envoy's output projection."""
    for name in OUT_PROJ_NAMES:
        if hasattr(attn_envoy._module, name):
            return getattr(attn_envoy, name)
    raise ValueError(f"{type(attn_envoy._module).__name__} has no output projection ({' / '.join(OUT_PROJ_NAMES)})")


def unpad(t: torch.Tensor, attention_mask: torch.Tensor, row: int) -> torch.Tensor:
    """Row ``row`` of a left-padded ``(B, T, …)`` tensor without its padding: ``(n_b, …)``."""
    n = int(attention_mask[row].sum())
    return t[row, t.shape[1] - n :]


@dataclass
class ComponentEdit:
    """Replace one component's activation at the ``(B, T)`` positions ``where``.

    ``kind``: ``"attn"`` (the whole output-projection input, i.e. the attention output),
    ``"head"`` (its slice ``head``) or ``"mlp"`` (the MLP output). The new activation is
    ``value``, ``(B, T, width)`` of that component (broadcastable, e.g. ``(width,)`` for a
    mean), or, with ``transform``, ``transform(a)`` of the activation ``a`` itself
    (``(…, width)`` to the same shape, e.g. an eraser).
    """

    layer: int
    kind: str
    head: int | None
    where: torch.Tensor
    value: torch.Tensor | None = None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


def _apply(h: torch.Tensor, edits: Sequence[ComponentEdit], d_head: int) -> torch.Tensor:
    out = h.clone()
    for e in edits:
        mask = e.where.to(h.device)
        lo, hi = (e.head * d_head, (e.head + 1) * d_head) if e.kind == "head" else (0, h.shape[-1])
        if e.transform is not None:
            value = e.transform(out[..., lo:hi]).to(dtype=h.dtype)
        else:
            value = e.value.to(device=h.device, dtype=h.dtype).expand(*h.shape[:-1], hi - lo)
        out[..., lo:hi][mask] = value[mask]
    return out


@contextlib.contextmanager
def edit_components(model: torch.nn.Module, edits: Sequence[ComponentEdit]) -> Iterator[None]:
    """Apply ``edits`` in every forward inside the block (hooks on the output projection and the MLP, removed on exit)."""
    handles = []
    heads = n_heads(model)
    try:
        for layer in sorted({e.layer for e in edits}):
            proj, mlp = component_modules(model, layer)
            on_z = [e for e in edits if e.layer == layer and e.kind in ("attn", "head")]
            on_m = [e for e in edits if e.layer == layer and e.kind == "mlp"]
            if on_z:
                def pre(module, args, on_z=on_z):
                    z = args[0]
                    flat = z.flatten(2) if z.dim() == 4 else z  # the TransformerLens bridge passes (B, T, H, d_head)
                    edited = _apply(flat, on_z, flat.shape[-1] // heads).reshape(z.shape)
                    return (edited,) + tuple(args[1:])

                handles.append(proj.register_forward_pre_hook(pre))
            if on_m:
                def post(module, inputs, output, on_m=on_m):
                    if isinstance(output, (tuple, list)):
                        return (_apply(output[0], on_m, 0),) + tuple(output[1:])
                    return _apply(output, on_m, 0)

                handles.append(mlp.register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


def padded(rows: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """Unpadded ``(n_b, D)`` rows laid out left-padded in ``(B, width, D)`` (zeros in the padding)."""
    out = torch.zeros(len(rows), width, rows[0].shape[-1], dtype=rows[0].dtype)
    for b, r in enumerate(rows):
        out[b, width - r.shape[0]:] = r
    return out


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Run the model's attention as ``eager`` inside the block (it returns the attention weights), restored on exit."""
    configs = [model.config]
    if hasattr(model.config, "get_text_config") and model.config.get_text_config() is not model.config:
        configs.append(model.config.get_text_config())
    saved = [c._attn_implementation for c in configs]
    for c in configs:
        c._attn_implementation = "eager"
    try:
        yield
    finally:
        for c, value in zip(configs, saved):
            c._attn_implementation = value


def decision_attention(runner, texts: Sequence[str], layers: Sequence[int], demographic: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Attention of every head from the last position: ``(max weight off the first token, weight on the demographic tokens)``.

    Both ``(B, len(layers), H)``; ``demographic`` holds each text's demographic token
    indices (unpadded). The model runs once with eager attention (weights returned by
    the attention modules, read by forward hooks); ``RuntimeError`` when a module returns
    no weights (an attention implementation that does not expose them).
    """
    layers = list(layers)
    batch = runner.encode(list(texts))
    mask = batch["attention_mask"].cpu()
    width = mask.shape[1]
    weights: dict[int, torch.Tensor] = {}
    handles = []

    def keep(layer):
        def hook(module, inputs, output):
            w = output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else None
            if w is None:
                raise RuntimeError(f"the attention of layer {layer} returns no weights")
            weights[layer] = w[:, :, -1, :].detach().float().cpu()  # (B, H, T): from the last position

        return hook

    try:
        for layer in layers:
            block = decoder_layers(runner.model)[layer]
            handles.append(getattr(block, submodule_name(block, "attn_out")).register_forward_hook(keep(layer)))
        with torch.inference_mode(), eager_attention(runner.model):
            runner.model(**runner._model_kwargs(batch))
    finally:
        for h in handles:
            h.remove()
    B = len(texts)
    peak = np.zeros((B, len(layers), weights[layers[0]].shape[1]))
    demo = np.zeros_like(peak)
    for b in range(B):
        first = width - int(mask[b].sum())
        cols = [first + int(p) for p in demographic[b]]
        for i, layer in enumerate(layers):
            w = weights[layer][b]  # (H, T)
            peak[b, i] = w[:, first + 1 :].max(-1).values.numpy() if width - first > 1 else 0.0
            demo[b, i] = w[:, cols].sum(-1).numpy()
    return peak, demo

"""Hook sites and token positions: what a runner captures, and where.

Sites (one activation per decoder block ``l``):

- ``resid_post``: the block's output (the residual stream after block ``l``). Entry
  ``l`` equals Hugging Face's ``output_hidden_states[l + 1]`` for ``l < n_layers - 1``;
  the last entry is the last block's output *before* the final norm.
- ``attn_out``: the output of the block's attention module (``self_attn`` on
  Llama-style models, ``attn`` on GPT-2), before it is added to the residual stream.
- ``mlp_out``: the output of the block's MLP module, before it is added to the
  residual stream.

For models with "sandwich" norms (Gemma 2/3) ``attn_out``/``mlp_out`` are the
modules' outputs, i.e. *before* the post-sublayer norm.

Positions:

- ``last``: the last prompt token (the decision token). With left padding it is the
  last column of every row.
- ``demographic``: the mean over the token indices passed per text (the race and
  gender words; on BASE prompts the word "patient"). The indices count from the
  first token of the *unpadded* text (as :func:`extract.chat.char_spans_to_token_positions`
  returns them); :meth:`CapturePlan.build` shifts them by each row's left padding.

A :class:`CapturePlan` reduces an activation ``(B, T, d_model)`` to one ``(B, d_model)``
float32 tensor per position *inside* the hook (on the model's device), so the full
activation is never kept. :meth:`CapturePlan.acts` stacks the layers into
``(n_layers, B, d_model)`` float32 numpy arrays keyed ``(site, position)`` (one
device-to-host copy each).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

from latent_bias_probe.configs.names import POSITIONS, SITES

#: Attribute names of a decoder block's attention and MLP modules, tried in order.
ATTN_NAMES = ("self_attn", "attn", "self_attention", "attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")


def _names(value: Any, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    if not items:
        raise ValueError(f"{what}: at least one is needed (one of {', '.join(allowed)})")
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise ValueError(f"{what}: unknown {unknown!r}; expected some of {', '.join(allowed)}")
    if len(set(items)) != len(items):
        raise ValueError(f"{what}: duplicates in {list(items)!r}")
    return tuple(items)


def normalize_sites(sites: Sequence[str] | str) -> tuple[str, ...]:
    """Validate site names (``ValueError`` for unknown, duplicate or none)."""
    return _names(sites, SITES, "sites")


def normalize_positions(positions: Sequence[str] | str) -> tuple[str, ...]:
    """Validate position names (``ValueError`` for unknown, duplicate or none)."""
    return _names(positions, POSITIONS, "positions")


def submodule_name(layer, site: str) -> str:
    """The attribute name of ``layer``'s module for ``attn_out`` / ``mlp_out``."""
    names = {"attn_out": ATTN_NAMES, "mlp_out": MLP_NAMES}[site]
    for name in names:
        if isinstance(getattr(layer, name, None), torch.nn.Module):
            return name
    raise ValueError(f"{type(layer).__name__} has no {' / '.join(names)} module for site {site!r}")


def first_tensor(output: Any) -> torch.Tensor:
    """The hidden states in a module output (a tensor, or the first item of a tuple)."""
    while isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"expected a tensor module output, got {type(output).__name__}")
    return output


class CapturePlan:
    """Which sites/positions one forward captures, and the reduced results.

    Build it with :meth:`build` once the batch is tokenized; hooks call
    :meth:`record` with a site, a layer and the activation ``(B, T, d)``.
    """

    def __init__(
        self,
        sites: tuple[str, ...],
        positions: tuple[str, ...],
        n_layers: int,
        demo_index: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ):
        self.sites = sites
        self.positions = positions
        self.n_layers = n_layers
        self._demo = demo_index  # (rows, cols, counts) on the batch's device
        self._store: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

    @classmethod
    def build(
        cls,
        sites: Sequence[str] | str,
        positions: Sequence[str] | str,
        demographic_positions: Sequence[Sequence[int]] | None,
        attention_mask: torch.Tensor,
        n_layers: int,
    ) -> "CapturePlan":
        """Validate the request against a left-padded batch's ``attention_mask``."""
        sites = normalize_sites(sites)
        positions = normalize_positions(positions)
        demo = None
        if "demographic" in positions:
            demo = demographic_index(demographic_positions, attention_mask)
        return cls(sites, positions, n_layers, demo)

    def record(self, site: str, layer: int, hidden: torch.Tensor) -> None:
        """Reduce ``hidden`` ``(B, T, d)`` to each position and keep the result."""
        with torch.no_grad():
            out: dict[str, torch.Tensor] = {}
            for pos in self.positions:
                if pos == "last":
                    vec = hidden[:, -1, :].to(torch.float32)
                else:
                    rows, cols, counts = self._demo
                    picked = hidden[rows, cols].to(torch.float32)  # (K, d)
                    summed = torch.zeros(hidden.shape[0], hidden.shape[-1], dtype=torch.float32, device=hidden.device)
                    summed.index_add_(0, rows, picked)
                    vec = summed / counts
                out[pos] = vec.detach().clone()  # (B, d) only: the full activation is not kept
            self._store[(site, layer)] = out

    def acts(self) -> dict[tuple[str, str], np.ndarray]:
        """``{(site, position): float32 (n_layers, B, d)}``; raises if a hook never fired."""
        missing = [(s, l) for s in self.sites for l in range(self.n_layers) if (s, l) not in self._store]
        if missing:
            raise RuntimeError(f"no activation was captured for (site, layer) {missing[:5]}")
        result = {}
        for site in self.sites:
            for pos in self.positions:
                stacked = torch.stack([self._store[(site, l)][pos] for l in range(self.n_layers)])
                result[(site, pos)] = stacked.to("cpu").numpy()  # one device transfer per (site, position)
        return result


def demographic_index(
    demographic_positions: Sequence[Sequence[int]] | None, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, cols, counts)``: padded-batch coordinates of every demographic token.

    ``demographic_positions[i]`` are token indices of text ``i`` counted without
    padding; each is shifted by the row's number of left-pad tokens. Duplicates
    count once. ``ValueError`` when the list is missing, of the wrong length, has an
    empty entry, or an index outside the text.
    """
    batch, width = attention_mask.shape
    if demographic_positions is None:
        raise ValueError("positions include 'demographic' but no demographic_positions were given")
    if isinstance(demographic_positions, (str, bytes)) or len(demographic_positions) != batch:
        raise ValueError(
            f"demographic_positions: expected one list of token indices per text ({batch}), "
            f"got {len(demographic_positions) if not isinstance(demographic_positions, (str, bytes)) else 'a string'}"
        )
    lengths = attention_mask.sum(-1).tolist()
    rows: list[int] = []
    cols: list[int] = []
    counts: list[int] = []
    for i, idx in enumerate(demographic_positions):
        try:
            unique = sorted({int(p) for p in idx})
        except (TypeError, ValueError):
            raise ValueError(f"demographic_positions[{i}]: expected integer token indices, got {idx!r}") from None
        if not unique:
            raise ValueError(f"demographic_positions[{i}]: empty (every text needs at least one demographic token)")
        n = int(lengths[i])
        bad = [p for p in unique if p < 0 or p >= n]
        if bad:
            raise ValueError(f"demographic_positions[{i}]: indices {bad} outside the text's {n} tokens")
        pad = width - n
        rows.extend([i] * len(unique))
        cols.extend(p + pad for p in unique)
        counts.append(len(unique))
    device = attention_mask.device
    return (
        torch.tensor(rows, dtype=torch.long, device=device),
        torch.tensor(cols, dtype=torch.long, device=device),
        torch.tensor(counts, dtype=torch.float32, device=device).unsqueeze(1),
    )

"""Multiple-testing correction names (``scoring.correction``, ``probe score --correction``)."""

from __future__ import annotations

import numpy as np


def check_correction(method: str) -> str:
    """Validate a multiple-testing method name.

    Accepted: ``"none"`` (plain p <= alpha) or any method name statsmodels'
    ``multipletests`` recognises (``holm``, ``bonferroni``, ``fdr_bh``, ...).
    Raises ``ValueError`` otherwise.  Returns the name unchanged.
    """
    if not isinstance(method, str):
        raise ValueError(f"correction method must be a string, got {method!r}")
    if method.lower() == "none" or method.lower() == "holm":
        return method  # holm is computed here without statsmodels (see reject)
    from statsmodels.stats import multitest  # lazy: imports pandas

    aliases = getattr(multitest, "multitest_alias", None)
    if aliases is not None:
        ok = method.lower() in aliases
    else:  # pragma: no cover - older statsmodels without the alias table
        try:
            multitest.multipletests(np.array([0.5]), alpha=0.05, method=method)
            ok = True
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(
            f"unknown multiple-testing correction {method!r}; use 'none' or a "
            "statsmodels multipletests method (holm, bonferroni, fdr_bh, ...)"
        )
    return method

"""One number from a library result, whatever shape the library chose to return it in.

scipy and statsmodels return a scalar as a Python float, a numpy scalar, a 0-d array or,
depending on version and input (statsmodels' ``solve_power`` for some sample sizes), a
one-element array; numpy >= 2.4 refuses ``float()`` on the last. :func:`as_float` takes
all four and refuses anything holding more or fewer than one value, so a shape change in
a library surfaces as a clear error instead of a crash deep in numpy or a silent NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_float"]


def as_float(x: Any) -> float:
    """``x`` as a Python float: a number, a numpy scalar, or an array holding exactly one value.

    Raises TypeError for None, strings and arrays of any other size.
    """
    if isinstance(x, (bool, np.bool_)):
        return float(x)
    if isinstance(x, (int, float, np.integer, np.floating)):
        return float(x)
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"expected a number, got {type(x).__name__} {x!r}")
    arr = np.asarray(x)
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        raise TypeError(f"expected one number, got an array of shape {arr.shape} and dtype {arr.dtype}")
    return float(arr.reshape(-1)[0])

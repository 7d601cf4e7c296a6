"""The error raised for bad benchmark input (a file, row, column or value at fault)."""

from __future__ import annotations

from latent_bias_probe.configs.errors import InputError


class BenchmarkError(InputError, ValueError):
    """A benchmark source or render request is invalid.

    The message is one line naming the file, row, column or value at fault. It is an
    :class:`configs.errors.InputError` (the CLI exits with code 2) and a ``ValueError``.
    """

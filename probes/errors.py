"""The error raised for bad probe inputs (shapes, labels, too few cases)."""

from __future__ import annotations

from latent_bias_probe.configs.errors import InputError


class ProbeInputError(InputError, ValueError):
    """A probe input is malformed: wrong shape, too few cases or classes, bad label.

    It is an :class:`configs.errors.InputError` (the CLI exits with code 2 and a
    one-line message) and a :class:`ValueError` (what array code expects).
    """

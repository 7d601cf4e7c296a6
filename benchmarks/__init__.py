"""Benchmarks: case sources and the renderer that turns a case into BASE + variants."""

from benchmarks.types import BASE, TASKS, TIERS, Case, Prompt

__all__ = ["BASE", "TASKS", "TIERS", "Case", "Prompt"]

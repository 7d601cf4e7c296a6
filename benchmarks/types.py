"""The two records every benchmark produces: a clinical case and a rendered prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from latent_bias_probe.configs.names import BASE, TASKS, TIERS


@dataclass(frozen=True)
class Case:
    """One clinical scenario, before any demographic wording is added.

    ``fields`` holds the task-specific content (see ``benchmarks.render`` for the
    keys each task uses); a key that is absent or ``None`` is missing in the source,
    and tiers that need it degrade.
    """

    case_id: str
    task: str
    label: int | None  # 1 = YES, 0 = NO, None = unknown
    age: int | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class Prompt:
    """One rendered prompt: a case at one context tier for one demographic variant.

    ``demographic_spans`` are character spans in ``user`` of the race and gender
    words (on BASE prompts: the word "patient" of the opening sentence); the
    extractor maps them to token positions.
    """

    case_id: str
    tier: str
    variant: str  # "BASE" or "{Race}-{Gender}"
    race: str  # "BASE" on BASE prompts
    gender: str  # "BASE" on BASE prompts
    label: int | None
    system: str
    user: str
    demographic_spans: tuple[tuple[int, int], ...] = ()

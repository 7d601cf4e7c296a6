"""Part of a job config: the sections one pipeline stage is given (:mod:`pipeline.stages`).

A stage's record names the config sections it reads; the stage is handed a
:class:`ConfigSections` holding only those. It reads them as it would read the whole
:class:`~configs.schema.Config` (``cfg.probes.seed``), and reading any other section
raises :class:`AttributeError` naming the sections it holds, so a stage that reads more
than its record says fails at once. Like the config, it cannot be assigned to:
:func:`replace_sections` makes a changed copy of either.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from .schema import Config


class ConfigSections:
    """Some sections of a :class:`~configs.schema.Config`, read as attributes as on the config itself."""

    __slots__ = ("_sections",)

    def __init__(self, sections: Mapping[str, Any]):
        from .schema import Config

        known = {f.name for f in dataclasses.fields(Config)}
        unknown = sorted(set(sections) - known)
        if unknown:
            raise ValueError(f"not sections of a Config: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        object.__setattr__(self, "_sections", dict(sections))

    @classmethod
    def of(cls, cfg: "Config | ConfigSections", names: Iterable[str]) -> "ConfigSections":
        """The sections ``names`` of ``cfg`` (a config, or sections holding at least those)."""
        return cls({name: getattr(cfg, name) for name in names})

    @property
    def names(self) -> tuple[str, ...]:
        """The sections held, in the order given."""
        return tuple(self._sections)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy and pickle probe for hooks before __init__ has run
            raise AttributeError(name)
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(
                f"config section {name!r} was not given to this stage (it has {', '.join(self.names) or 'none'}); "
                "a stage reads the sections its record in pipeline.stages names"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigSections) and self._sections == other._sections

    __hash__ = None  # type: ignore[assignment]  # sections hold lists

    def __repr__(self) -> str:
        return f"ConfigSections({', '.join(f'{k}={v!r}' for k, v in self._sections.items())})"

    def __reduce__(self):
        return (ConfigSections, (self._sections,))

    def to_dict(self) -> dict[str, Any]:
        """The sections held as plain JSON-able data (as :meth:`Config.to_dict` has them)."""
        return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in self._sections.items()}


def replace_sections(cfg: "Config | ConfigSections", **sections: Any) -> "Config | ConfigSections":
    """A copy of ``cfg`` (a config or config sections) with the given sections replaced; ``cfg`` is left as it is."""
    if isinstance(cfg, ConfigSections):
        missing = sorted(set(sections) - set(cfg.names))
        if missing:
            raise ValueError(f"replace_sections: {', '.join(missing)} not among the sections held ({', '.join(cfg.names)})")
        return ConfigSections({**cfg._sections, **sections})
    return dataclasses.replace(cfg, **sections)

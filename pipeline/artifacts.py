"""The typed run directory: every artifact declared once, with its producer and inputs.

A run directory holds the artifacts of :data:`ARTIFACTS` and a manifest,
``artifacts.json``, that records for each artifact written by a stage its
fingerprint and the fingerprints of its inputs at the time it was made::

    {"format": "latent-bias-artifacts/1",
     "artifacts": {"probes.h5": {"producer": "fit", "sha256": "…",
                                 "inputs": {"cache.h5": "…", "config:probes": "…"}}, …}}

An input is another artifact or a part of the run's config (``config:<section>``,
hashed by :func:`configs.hashes.section_sha256` from ``config.json``).

An artifact is **fresh** when its file exists, its fingerprint equals the recorded
one, every recorded input still has the recorded fingerprint, and every input
artifact is itself fresh. Only fresh artifacts are read into ``results.json`` and the
report; :meth:`RunDir.prune` deletes the stale ones, and every stage calls it after
writing, so a number from an earlier run can neither be shown nor be lying around.

Fingerprints: SHA-256 of the file's bytes, except ``cache.h5``, whose fingerprint
covers its root attributes, prompts, outputs and ``done`` mask
(:meth:`extract.cache.Cache.fingerprint`): the activations are a function of those,
and hashing them would mean reading gigabytes.

A ``cache.h5`` or ``config.json`` that no manifest lists (a cache made by another
tool, a run directory of an earlier version) is *adopted* by :meth:`RunDir.adopt`:
recorded as it is, with no inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text

log = logging.getLogger(__name__)

MANIFEST = "artifacts.json"
MANIFEST_FORMAT = "latent-bias-artifacts/1"


@dataclass(frozen=True)
class Artifact:
    """One file of a run directory.

    ``inputs`` are artifact file names or ``config:<section>`` keys; an input in
    ``optional`` may be absent (then it is not recorded), all others must be fresh
    when the artifact is written.
    """

    path: str
    producer: str
    inputs: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    description: str = ""


ARTIFACTS: dict[str, Artifact] = {
    a.path: a
    for a in (
        Artifact("config.json", "extract", (), description="the resolved config of the run"),
        Artifact("cache.h5", "extract", ("config:extraction",), description="prompts, outputs and activations"),
        Artifact("predictions.csv", "extract", ("cache.h5",), description="one row per prompt"),
        Artifact(
            "batch_check.json", "extract", ("cache.h5", "config:batch_check"),
            description="P(Yes) of sampled prompts re-run alone",
        ),
        Artifact(
            "masked.json", "extract", ("cache.h5", "config:extraction"),
            description="masked-LM audit: per-template log-probabilities, pseudo-log-likelihoods, corpus counts",
        ),
        Artifact(
            "probes.h5", "fit", ("cache.h5", "config:probes", "config:scoring"),
            description="value axis, steering vectors, probe curves and the latent scores",
        ),
        Artifact(
            "explain.json", "explain", ("cache.h5", "probes.h5", "config:explain", "config:extraction"),
            description="steering dose-response and erasure mediation",
        ),
        Artifact(
            "results.json", "score", ("predictions.csv", "config:scoring"),
            optional=("batch_check.json", "probes.h5", "explain.json", "masked.json"),
            description="every score of the run",
        ),
        Artifact("report.html", "report", ("results.json",), optional=("explain.json",), description="the auditor report"),
    )
}
#: the order stages run in
STAGES = ("extract", "score", "fit", "explain", "report")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunDir:
    """A run directory: paths of its artifacts, their manifest, freshness and pruning."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._manifest: dict[str, Any] | None = None
        self._fingerprints: dict[str, str | None] = {}

    # ------------------------------------------------------------------ paths

    def __truediv__(self, name: str) -> Path:
        if name not in ARTIFACTS and name != MANIFEST:
            raise KeyError(f"{name!r} is not a declared run artifact")
        return self.path / name

    def exists(self, name: str) -> bool:
        """Whether the artifact's file exists (fresh or not)."""
        return (self / name).is_file()

    # ------------------------------------------------------------------ manifest

    @property
    def manifest(self) -> dict[str, Any]:
        """``artifact -> {"producer", "sha256", "inputs"}`` (empty when there is none)."""
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: unreadable, every artifact of the run counts as stale", path)
            return {}
        entries = data.get("artifacts") if isinstance(data, dict) else None
        if data.get("format") != MANIFEST_FORMAT or not isinstance(entries, dict):
            log.warning("%s: not a %s manifest, every artifact of the run counts as stale", path, MANIFEST_FORMAT)
            return {}
        return {k: v for k, v in entries.items() if k in ARTIFACTS and isinstance(v, dict)}

    def _write_manifest(self) -> None:
        body = {"format": MANIFEST_FORMAT, "artifacts": dict(sorted(self.manifest.items()))}
        atomic_write_text(self.path / MANIFEST, json.dumps(body, indent=2) + "\n")

    # ------------------------------------------------------------------ fingerprints

    def fingerprint(self, key: str) -> str | None:
        """The current fingerprint of an artifact or ``config:<section>`` (None: absent/unreadable)."""
        if key not in self._fingerprints:
            self._fingerprints[key] = self._compute_fingerprint(key)
        return self._fingerprints[key]

    def _compute_fingerprint(self, key: str) -> str | None:
        if key.startswith("config:"):
            cfg = self.config_or_none()
            return None if cfg is None else _section_sha256(cfg, key.split(":", 1)[1])
        path = self / key
        if not path.is_file():
            return None
        if key == "cache.h5":
            from latent_bias_probe.extract.cache import Cache

            try:
                with Cache(path) as cache:
                    return cache.fingerprint()
            except (OSError, InputError, KeyError, ValueError):
                return None
        return file_sha256(path)

    def forget(self, key: str | None = None) -> None:
        """Drop memoised fingerprints (all, or of one key) after a file changed."""
        if key is None:
            self._fingerprints.clear()
        else:
            self._fingerprints.pop(key, None)

    # ------------------------------------------------------------------ config

    def config_or_none(self):
        """The run's config from ``config.json`` (None when absent or invalid)."""
        from latent_bias_probe.configs.schema import config_from_dict

        path = self.path / "config.json"
        if not path.is_file():
            return None
        try:
            return config_from_dict(json.loads(path.read_text(encoding="utf-8")), Path.cwd(), str(path))
        except (OSError, ValueError, InputError):
            return None

    # ------------------------------------------------------------------ freshness

    def is_fresh(self, name: str, _seen: frozenset[str] = frozenset()) -> bool:
        """Whether ``name`` exists, is unchanged since recorded, and was made from the current inputs."""
        entry = self.manifest.get(name)
        if entry is None or name in _seen:
            return False
        current = self.fingerprint(name)
        if current is None or current != entry.get("sha256"):
            return False
        recorded = entry.get("inputs") or {}
        art = ARTIFACTS[name]
        if entry.get("producer") != "adopted" and any(key not in recorded for key in art.inputs):
            return False
        for key, sha in recorded.items():
            if self.fingerprint(key) != sha:
                return False
            if not key.startswith("config:") and not self.is_fresh(key, _seen | {name}):
                return False
        return True

    def stale(self) -> list[str]:
        """Artifacts whose files exist but are not fresh."""
        return [name for name in ARTIFACTS if self.exists(name) and not self.is_fresh(name)]

    def why_stale(self, name: str) -> str:
        """A short reason why ``name`` is not fresh (for logs and ``probe validate``)."""
        entry = self.manifest.get(name)
        if not self.exists(name):
            return "missing"
        if entry is None:
            return f"not recorded in {MANIFEST}"
        if self.fingerprint(name) != entry.get("sha256"):
            return "changed since it was written"
        for key, sha in (entry.get("inputs") or {}).items():
            if self.fingerprint(key) != sha:
                return f"made from another {key}"
            if not key.startswith("config:") and not self.is_fresh(key):
                return f"its input {key} is stale"
        missing = [] if entry.get("producer") == "adopted" else [k for k in ARTIFACTS[name].inputs if k not in (entry.get("inputs") or {})]
        return f"inputs not recorded: {', '.join(missing)}" if missing else "fresh"

    # ------------------------------------------------------------------ writing

    def record(self, name: str, extra_inputs: Mapping[str, str] | None = None) -> None:
        """Record ``name`` (just written by its producer) with the current fingerprints of its inputs.

        Required inputs must be fresh, optional ones are recorded only when fresh.
        """
        art = ARTIFACTS[name]
        inputs: dict[str, str] = {}
        for key in art.inputs + art.optional:
            sha = self.fingerprint(key)
            required = key in art.inputs
            if not key.startswith("config:") and not self.is_fresh(key):
                if required:
                    raise RuntimeError(f"{self / name}: its input {key} is not fresh ({self.why_stale(key)})")
                continue
            if sha is None:
                if required:
                    raise RuntimeError(f"{self / name}: its input {key} is missing")
                continue
            inputs[key] = sha
        inputs.update(extra_inputs or {})
        self.forget(name)
        sha = self.fingerprint(name)
        if sha is None:
            raise RuntimeError(f"{self / name}: not written")
        self.manifest[name] = {"producer": art.producer, "sha256": sha, "inputs": dict(sorted(inputs.items()))}
        self._write_manifest()

    def recorded_inputs(self, name: str) -> dict[str, str]:
        """The input fingerprints recorded for ``name`` (empty if unrecorded)."""
        return dict((self.manifest.get(name) or {}).get("inputs") or {})

    def adopt(self, name: str) -> None:
        """Record an unlisted ``cache.h5`` or ``config.json`` as it is (no inputs)."""
        if name not in ("cache.h5", "config.json"):
            raise ValueError(f"only cache.h5 and config.json can be adopted, not {name}")
        if name in self.manifest or not self.exists(name):
            return
        sha = self.fingerprint(name)
        if sha is None:
            return
        self.manifest[name] = {"producer": "adopted", "sha256": sha, "inputs": {}}
        self._write_manifest()

    def prune(self) -> list[str]:
        """Delete every stale artifact (and its manifest entry); return their names."""
        removed = []
        for name in self.stale():
            if name in ("cache.h5", "config.json"):
                continue  # inputs of everything else: never deleted, only replaced by extract
            reason = self.why_stale(name)
            (self / name).unlink(missing_ok=True)
            self.manifest.pop(name, None)
            self.forget(name)
            removed.append(name)
            log.warning("removed stale %s (%s)", self / name, reason)
        if removed:
            self._write_manifest()
        return removed

    def invalidate(self, name: str) -> None:
        """Forget that ``name`` was made (it is being rewritten)."""
        self.manifest.pop(name, None)
        self.forget(name)


def _section_sha256(cfg, section: str) -> str:
    from latent_bias_probe.configs.hashes import section_sha256

    return section_sha256(cfg, section)

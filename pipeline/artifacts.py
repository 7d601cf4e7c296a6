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

Fingerprints: SHA-256 of the file's bytes, except

- ``cache.h5``, whose fingerprint covers its root attributes, prompts, outputs and
  ``done`` mask (:meth:`extract.cache.Cache.fingerprint`): the activations are a
  function of those, and hashing them would mean reading gigabytes;
- JSON artifacts, fingerprinted by their canonical content (sorted keys, no
  whitespace), so a re-indented ``explain.json`` is the same artifact (a manifest
  of an earlier version, which recorded the file's bytes, still matches);
- ``masked:templates`` and ``masked:corpus`` (inputs of ``masked.json``): the
  contents of the template file and of every corpus file the run's config names.

Only what the manifest records as written by the toolkit is ever pruned: a file
of the same name that no manifest lists is never deleted (it is not fresh, so it
is never read either). A manifest of the wrong shape counts as none (one warning),
and a malformed entry of it as unrecorded. ``config.json`` edited by hand after it
was recorded never drives a stage (:meth:`RunDir.check_config`).

A ``cache.h5`` or ``config.json`` that no manifest lists (a cache made by another
tool, a run directory of an earlier version) is *adopted* by :meth:`RunDir.adopt`:
recorded as it is, with no inputs.

:class:`SweepDir` applies the same rules to a sweep directory (``sweep.json``,
``sweep.csv``, ``sweep.html``; ``sweep.csv`` records the ``results.json`` of every
combination it was made from as ``item:<name>``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text

log = logging.getLogger(__name__)

MANIFEST = "artifacts.json"
MANIFEST_FORMAT = "latent-bias-artifacts/1"
SWEEP_MANIFEST_FORMAT = "latent-bias-sweep-artifacts/1"
#: the config sections an input may name (``config:<section>``)
CONFIG_SECTIONS = ("extraction", "batch_check", "probes", "scoring", "explain")
#: a sweep combination's folder name (what ``item:<name>`` may hold)
_ITEM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_warned: set[str] = set()


@dataclass(frozen=True)
class Artifact:
    """One file of a run directory.

    ``producer`` is the stage that writes it (:data:`pipeline.stages.STAGE_TABLE`;
    ``adopted`` in a manifest: recorded as found). ``inputs`` are artifact file names or ``config:<section>`` keys; an input in
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
            "masked.json", "extract", ("cache.h5", "config:extraction", "masked:templates", "masked:corpus"),
            description="masked-LM audit: per-template log-probabilities, pseudo-log-likelihoods, corpus counts",
        ),
        Artifact(
            "probes.h5", "fit", ("cache.h5", "config:probes", "config:scoring"),
            description="value axis, steering vectors, probe curves and the latent scores",
        ),
        Artifact(
            "explain.json", "explain", ("cache.h5", "probes.h5", "config:explain", "config:extraction"),
            description="steering dose-response, erasure mediation, causal trace, component attribution and remedy",
        ),
        Artifact(
            "results.json", "score", ("predictions.csv", "config:scoring"),
            optional=("batch_check.json", "probes.h5", "explain.json", "masked.json"),
            description="every score of the run",
        ),
        Artifact("report.html", "report", ("results.json",), optional=("explain.json",), description="the auditor report"),
    )
}

SWEEP_ARTIFACTS: dict[str, Artifact] = {
    a.path: a
    for a in (
        Artifact("sweep.json", "sweep", (), description="the sweep's config and its combinations"),
        Artifact("sweep.csv", "sweep", ("sweep.json",), description="one row per combination and tier"),
        Artifact("sweep.html", "report", ("sweep.csv",), description="the sweep report"),
    )
}


def _warn_once(message: str, *args: Any) -> None:
    text = message % args
    if text not in _warned:
        _warned.add(text)
        log.warning(text)


def canonical_json_sha256(path: Path) -> str | None:
    """SHA-256 of a JSON file's canonical form (sorted keys, no whitespace); None if it is not JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunDir:
    """A run directory: paths of its artifacts, their manifest, freshness and pruning."""

    #: the files of this kind of directory
    artifacts: dict[str, Artifact] = ARTIFACTS
    manifest_format: str = MANIFEST_FORMAT
    #: inputs of everything else: never pruned, only replaced by their stage
    never_pruned: tuple[str, ...] = ("cache.h5", "config.json")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._manifest: dict[str, Any] | None = None
        self._fingerprints: dict[str, str | None] = {}

    # ------------------------------------------------------------------ paths

    def __truediv__(self, name: str) -> Path:
        if name not in self.artifacts and name != MANIFEST:
            raise KeyError(f"{name!r} is not a declared artifact of {type(self).__name__}")
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

    def has_manifest(self) -> bool:
        """Whether the directory holds a readable manifest of this kind (a run directory of this toolkit)."""
        return read_manifest_format(self.path) == self.manifest_format

    def _read_manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            _warn_once("%s: unreadable, every artifact here counts as stale", path)
            return {}
        entries = data.get("artifacts") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("format") != self.manifest_format or not isinstance(entries, dict):
            _warn_once("%s: not a %s manifest, every artifact here counts as stale", path, self.manifest_format)
            return {}
        out = {}
        for name, entry in entries.items():
            problem = self._entry_problem(name, entry)
            if problem:
                _warn_once("%s: entry %.80r ignored (%s); that artifact counts as stale", path, name, problem)
                continue
            out[name] = {"producer": entry["producer"], "sha256": entry["sha256"], "inputs": dict(entry.get("inputs") or {})}
        return out

    def _entry_problem(self, name: Any, entry: Any) -> str | None:
        """Why a manifest entry is malformed (None: well-formed)."""
        if name not in self.artifacts:
            return "not an artifact of this directory"
        if not isinstance(entry, dict):
            return "not a mapping"
        if not isinstance(entry.get("producer"), str) or not isinstance(entry.get("sha256"), str):
            return "producer and sha256 must be strings"
        inputs = entry.get("inputs") or {}
        if not isinstance(inputs, dict):
            return "inputs must be a mapping"
        for key, sha in inputs.items():
            if not self.is_input_key(key) or key == name:
                return f"unknown input {key[:80]!r}"
            if not isinstance(sha, str):
                return f"input {key!r}: fingerprint must be a string"
        return None

    def is_input_key(self, key: str) -> bool:
        """Whether ``key`` names an input this kind of directory can fingerprint."""
        return any(key in a.inputs + a.optional for a in self.artifacts.values())

    def _write_manifest(self) -> None:
        body = {"format": self.manifest_format, "artifacts": dict(sorted(self.manifest.items()))}
        atomic_write_text(self.path / MANIFEST, json.dumps(body, indent=2) + "\n")

    # ------------------------------------------------------------------ fingerprints

    def fingerprint(self, key: str) -> str | None:
        """The current fingerprint of an artifact or input key (None: absent/unreadable)."""
        if key not in self._fingerprints:
            self._fingerprints[key] = self._compute_fingerprint(key)
        return self._fingerprints[key]

    def _compute_fingerprint(self, key: str) -> str | None:
        if key.startswith("config:"):
            cfg = self.config_or_none()
            section = key.split(":", 1)[1]
            return None if cfg is None or section not in CONFIG_SECTIONS else _section_sha256(cfg, section)
        if key.startswith("masked:"):
            cfg = self.config_or_none()
            return None if cfg is None else _masked_input_sha256(cfg, key.split(":", 1)[1])
        if key not in self.artifacts:
            return None
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
        if key.endswith(".json"):
            return canonical_json_sha256(path) or file_sha256(path)
        return file_sha256(path)

    def _matches(self, key: str, recorded: Any) -> bool:
        """Whether ``key``'s current fingerprint is ``recorded`` (a JSON artifact may match by its bytes:
        manifests of earlier versions recorded those)."""
        if self.fingerprint(key) == recorded:
            return True
        path = self.path / key
        return key.endswith(".json") and key in self.artifacts and path.is_file() and file_sha256(path) == recorded

    def forget(self, key: str | None = None) -> None:
        """Drop memoised fingerprints (all, or of one key) after a file changed."""
        if key is None:
            self._fingerprints.clear()
        else:
            self._fingerprints.pop(key, None)

    # ------------------------------------------------------------------ config

    def config_or_none(self):
        """The run's config from ``config.json`` (None when absent, invalid or edited since recorded)."""
        from latent_bias_probe.configs.schema import config_from_dict

        path = self.path / "config.json"
        if not path.is_file() or self.config_edited():
            return None
        try:
            return config_from_dict(json.loads(path.read_text(encoding="utf-8")), Path.cwd(), str(path))
        except (OSError, ValueError, InputError, RecursionError):
            return None

    def config_edited(self) -> bool:
        """Whether ``config.json`` differs from what the toolkit recorded (a hand edit)."""
        entry = self.manifest.get("config.json")
        path = self.path / "config.json"
        if entry is None or not path.is_file() or "config.json" not in self.artifacts:
            return False
        return not self._matches("config.json", entry["sha256"])

    def check_config(self) -> None:
        """Refuse a ``config.json`` edited by hand: its edits would drive the stage (exit 2)."""
        if self.config_edited():
            raise InputError(
                f"{self.path / 'config.json'}: changed since the toolkit wrote it; a hand edit never drives a stage "
                "(restore it, or re-run 'probe run CONFIG --out DIR' with the settings you want, e.g. --set KEY=VALUE)"
            )

    # ------------------------------------------------------------------ freshness

    def is_fresh(self, name: str, _seen: frozenset[str] = frozenset()) -> bool:
        """Whether ``name`` exists, is unchanged since recorded, and was made from the current inputs."""
        entry = self.manifest.get(name)
        if entry is None or name in _seen:
            return False
        if self.fingerprint(name) is None or not self._matches(name, entry["sha256"]):
            return False
        recorded = entry["inputs"]
        art = self.artifacts[name]
        if entry["producer"] != "adopted" and any(key not in recorded for key in art.inputs):
            return False
        for key, sha in recorded.items():
            if not self._matches(key, sha):
                return False
            if key in self.artifacts and not self.is_fresh(key, _seen | {name}):
                return False
        return True

    def stale(self) -> list[str]:
        """Artifacts whose files exist but are not fresh."""
        return [name for name in self.artifacts if self.exists(name) and not self.is_fresh(name)]

    def why_stale(self, name: str) -> str:
        """A short reason why ``name`` is not fresh (for logs and ``probe validate``)."""
        entry = self.manifest.get(name)
        if not self.exists(name):
            return "missing"
        if entry is None:
            return f"not recorded in {MANIFEST}"
        if not self._matches(name, entry["sha256"]):
            return "changed since it was written"
        for key, sha in entry["inputs"].items():
            if not self._matches(key, sha):
                return f"made from another {key}"
            if key in self.artifacts and not self.is_fresh(key):
                return f"its input {key} is stale"
        missing = [] if entry["producer"] == "adopted" else [k for k in self.artifacts[name].inputs if k not in entry["inputs"]]
        return f"inputs not recorded: {', '.join(missing)}" if missing else "fresh"

    # ------------------------------------------------------------------ writing

    def record(self, name: str, extra_inputs: Mapping[str, str] | None = None) -> None:
        """Record ``name`` (just written by its producer) with the current fingerprints of its inputs.

        Required inputs must be fresh, optional ones are recorded only when fresh.
        ``extra_inputs``: further input keys (:meth:`is_input_key`) with their fingerprints.
        """
        art = self.artifacts[name]
        inputs: dict[str, str] = {}
        for key in art.inputs + art.optional:
            sha = self.fingerprint(key)
            required = key in art.inputs
            if key in self.artifacts and not self.is_fresh(key):
                if required:
                    raise RuntimeError(f"{self / name}: its input {key} is not fresh ({self.why_stale(key)})")
                continue
            if sha is None:
                if required:
                    raise RuntimeError(f"{self / name}: its input {key} is missing")
                continue
            inputs[key] = sha
        for key, sha in (extra_inputs or {}).items():
            if not self.is_input_key(key):
                raise ValueError(f"{self / name}: {key!r} is not an input key")
            inputs[key] = sha
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
        """Delete every stale artifact the manifest records as written here (and its entry); return their names.

        A file no manifest lists is never deleted: the toolkit did not write it.
        """
        removed = []
        for name in self.stale():
            if name in self.never_pruned or name not in self.manifest:
                continue
            reason = self.why_stale(name)
            (self / name).unlink(missing_ok=True)
            self.manifest.pop(name, None)
            self.forget(name)
            removed.append(name)
            log.warning("removed stale %s (%s)", self / name, reason)
        if removed:
            self._write_manifest()
        return removed

    def invalidate(self, name: str, persist: bool = False) -> None:
        """Forget that ``name`` was made (it is being rewritten); ``persist``: in the manifest file too."""
        had = self.manifest.pop(name, None) is not None
        self.forget(name)
        if persist and had:
            self._write_manifest()


    def restore(self, name: str, entry: dict[str, Any]) -> None:
        """Put back the manifest entry of ``name`` that :meth:`invalidate` dropped (the file was not rewritten)."""
        self.manifest[name] = entry
        self.forget(name)
        self._write_manifest()


class SweepDir(RunDir):
    """A sweep directory: ``sweep.json``, ``sweep.csv`` and ``sweep.html`` under their own manifest.

    ``sweep.csv`` records, besides ``sweep.json``, the fingerprint of every
    combination's ``results.json`` it was made from (input key ``item:<name>``),
    which counts only while that results.json is fresh in its run directory.
    """

    artifacts = SWEEP_ARTIFACTS
    manifest_format = SWEEP_MANIFEST_FORMAT
    never_pruned = ("sweep.json",)

    def is_input_key(self, key: str) -> bool:
        if isinstance(key, str) and key.startswith("item:"):
            name = key[5:]
            return bool(_ITEM_NAME.fullmatch(name)) and name not in (".", "..")
        return super().is_input_key(key)

    def _compute_fingerprint(self, key: str) -> str | None:
        if key.startswith("item:"):
            if not self.is_input_key(key):
                return None
            run = RunDir(self.path / key[5:])
            return run.fingerprint("results.json") if run.is_fresh("results.json") else None
        return super()._compute_fingerprint(key)

    def config_edited(self) -> bool:
        return False


def read_manifest_format(path: Path) -> str | None:
    """The ``format`` of ``path/artifacts.json`` when it is a readable manifest mapping, else None."""
    try:
        data = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("artifacts"), dict) and isinstance(data.get("format"), str):
        return data["format"]
    return None


def _section_sha256(cfg, section: str) -> str:
    from latent_bias_probe.configs.hashes import section_sha256

    return section_sha256(cfg, section)


def _masked_input_sha256(cfg, what: str) -> str | None:
    """``masked:templates``: the template file's contents; ``masked:corpus``: every corpus file's contents."""
    from latent_bias_probe.benchmarks.corpus import corpus_sha256
    from latent_bias_probe.benchmarks.templates import template_path
    from latent_bias_probe.configs.schema import MaskedConfig

    mk = cfg.masked if cfg.masked is not None else MaskedConfig()
    try:
        if what == "templates":
            return file_sha256(template_path(mk.templates))
        if what == "corpus":
            return "none" if mk.corpus is None else corpus_sha256(mk.corpus)
    except (OSError, InputError):
        return None
    return None

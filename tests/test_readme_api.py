"""The README's Python API example runs as written (on the tiny model instead of the demo config)."""

from __future__ import annotations

import re

from conftest import ROOT, write_config


def _example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the API section has one python example"
    return blocks[0]


def test_readme_api_example_runs(tmp_path, tiny_model_dir, monkeypatch):
    code = _example()
    assert "configs/ed_triage_demo.yaml" in code
    cfg = write_config(tmp_path / "tiny.yaml", tiny_model_dir, extract={"batch_check": 0})
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace("configs/ed_triage_demo.yaml", str(cfg)), "README.md", "exec"), namespace)
    assert namespace["axis"].layer in range(4)
    assert (tmp_path / "runs" / "api" / "probes.h5").is_file()  # run_stage("fit") ran
    assert "latent" not in namespace["results"]["tiers"]["high"]  # run() did extract and score only

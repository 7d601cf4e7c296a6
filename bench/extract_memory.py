"""Peak RSS of `probe extract` for a small and a 10x larger benchmark.

Activations stream to cache.h5 batch by batch, so peak memory should not grow with
the number of prompts. Runs each size in a fresh process and prints peak RSS (MiB).

    .venv/bin/python bench/extract_memory.py [--model DIR] [--cases 16 160] [--tiers low]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


CHILD = (
    "import atexit, resource, sys, cli\n"
    "atexit.register(lambda: sys.stderr.write(f'MAXRSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n'))\n"
    "cli.main()\n"
)


def peak_rss_mib(config: Path, out: Path) -> float:
    """Run `probe extract` in a fresh child process; return its own peak RSS in MiB."""
    res = subprocess.run(
        [sys.executable, "-c", CHILD, "-q", "extract", str(config), "--out", str(out), "--no-progress"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    line = [l for l in res.stderr.splitlines() if l.startswith("MAXRSS ")][-1]
    return int(line.split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--cases", type=int, nargs="+", default=[16, 160])
    ap.add_argument("--tiers", nargs="+", default=["low"])
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.cases:  # each size in its own fresh child, smallest first
            cfg = Path(tmp) / f"c{n}.yaml"
            cfg.write_text(yaml.safe_dump({
                "name": f"mem{n}", "model": {"name": args.model},
                "benchmark": {"source": "ed_triage", "n_cases": n, "tiers": args.tiers},
                "extract": {"batch_size": args.batch_size},
            }))
            rss = peak_rss_mib(cfg, Path(tmp) / f"run{n}")
            print(f"{n * 13 * len(args.tiers):>6} prompts: peak RSS {rss:8.1f} MiB", flush=True)


if __name__ == "__main__":
    main()

"""End-to-end benchmark of `dedup run` on a generated JSON Lines corpus, at both levels.

Each round runs the command in a child process (as a user would) and records MB/s, records/s
and the child's peak resident memory in extra_info, beside the counts it decided. The corpus
size is DEDUP_BENCH_CORPUS_MB (default 20, sized for a shared 2-core machine; the README figures
use 200):

    DEDUP_BENCH_CORPUS_MB=200 python -m pytest bench/test_bench_corpus.py --benchmark-only -s
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.corpus_gen import write_jsonl

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".cache"


def corpus_mb() -> float:
    return float(os.environ.get("DEDUP_BENCH_CORPUS_MB", 20))


@pytest.fixture(scope="module")
def corpus_file():
    """The seeded corpus, generated once and cached under bench/.cache/."""
    megabytes = corpus_mb()
    path = CACHE / f"corpus_gen_{megabytes:g}mb_seed0.jsonl"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_jsonl(tmp, megabytes, seed=0)
        os.replace(tmp, path)
    return path


# A child forked from pytest reports pytest's own high-water mark as its ru_maxrss (Linux keeps
# the larger of the two across exec): the run is started from this small parent instead, whose
# RUSAGE_CHILDREN then holds the run alone (as tests/test_resources.py does).
_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run([sys.executable, "-m", "dedup", *sys.argv[1:]], stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE)
wall = time.perf_counter() - start
sys.stderr.buffer.write(done.stderr)
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, done.returncode)
"""


def run_child(args) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in bytes, exit status) of `python -m dedup ARGS`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, args)], env=env,
                          capture_output=True, text=True)
    wall, peak, status = done.stdout.split()
    if int(status) != 0:
        raise RuntimeError(done.stderr)
    return float(wall), int(peak), int(status)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """One tiny run first, so numba's cache is filled before anything is measured."""
    folder = tmp_path_factory.mktemp("warm")
    write_jsonl(folder / "w.jsonl", 0.2, seed=1)
    for level in ("document", "paragraph"):
        run_child(["run", folder / "w.jsonl", "-o", folder / f"out-{level}", "--quiet",
                   "--level", level])


@pytest.mark.parametrize("level", ["document", "paragraph"])
def test_dedup_run(benchmark, warm, corpus_file, tmp_path, level):
    benchmark.group = f"dedup run: generated JSONL, {corpus_mb():g} MB"
    size = corpus_file.stat().st_size
    out = tmp_path / "out"
    measured = {}

    def once():
        shutil.rmtree(out, ignore_errors=True)
        wall, rss, _ = run_child(["run", corpus_file, "-o", out, "--quiet", "--level", level])
        measured.update(wall=wall, rss=rss)

    benchmark.pedantic(once, rounds=1, iterations=1)
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["counts"]
    info = {
        "megabytes": round(size / 1e6, 1),
        "records": counts["read"],
        "mb_per_s": round(size / 1e6 / measured["wall"], 2),
        "records_per_s": round(counts["read"] / measured["wall"]),
        "peak_rss_mb": round(measured["rss"] / 1e6),
        "removed_records": counts["removed"],
        "repeated_units": counts["units_repeated"],
        "timings": summary["timings"],
    }
    benchmark.extra_info.update(info)
    print(f"\n{level}: {json.dumps(info)}")
    assert counts["kept"] + counts["removed"] + counts["rejected"] == counts["read"]
    assert counts["units_repeated"] > 0

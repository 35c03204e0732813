"""`dedup run` on both engines: the local one and Ray (`--engine ray`, a local Ray on this
machine's cores), on the same generated JSON Lines corpus, at both levels.

Each round runs the command in a child process and samples, every 0.2 s, the proportional set
size (PSS, /proc/PID/smaps_rollup) summed over the child and all its descendants: Ray starts a
GCS server, a raylet and worker processes, and shares its object store between them, so the
peak RSS of one process would miss most of it and a sum of RSS would count shared pages twice.
extra_info holds MB/s, the peak, and the stage timings of summary.json; the outputs of the two
engines are compared byte for byte.

    DEDUP_BENCH_CORPUS_MB=200 python -m pytest bench/test_bench_ray.py --benchmark-only -s

Three contenders: local, ray (sketch stage as tasks, the default) and ray with the sketch stage
on Ray Data (DEDUP_RAY_SKETCH_ON=data); DEDUP_BENCH_ROUNDS=2 runs them twice, interleaved.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.corpus_gen import write_jsonl
from bench.test_bench_corpus import CACHE, corpus_mb, run_child

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The seeded corpus of bench/test_bench_corpus.py (cached under bench/.cache/), and one
    tiny local run first so that numba's cache is filled before anything is measured."""
    path = CACHE / f"corpus_gen_{corpus_mb():g}mb_seed0.jsonl"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_jsonl(tmp, corpus_mb(), seed=0)
        os.replace(tmp, path)
    folder = tmp_path_factory.mktemp("warm")
    write_jsonl(folder / "w.jsonl", 0.2, seed=1)
    for level in ("document", "paragraph"):
        run_child(["run", folder / "w.jsonl", "-o", folder / f"out-{level}", "--quiet",
                   "--level", level])
    return path


def _descendants(pid: int) -> list[int]:
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# A process forked from pytest starts with pytest's peak RSS as its own (Linux keeps the
# high-water mark of the memory it was forked with across exec), so a small process forks the
# run and reports its peak RSS.
MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_tree(args, env=None) -> tuple[float, int, int]:
    """(wall seconds, peak PSS of the process tree, peak RSS of the dedup process) of
    `python -m dedup ARGS`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", MEASURE, sys.executable, "-m", "dedup",
                              *map(str, args)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], sum(_pss(p) for p in _descendants(child.pid)))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, error = child.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    code, rss_kb = output.decode().split()
    if child.returncode != 0 or code != "0":
        raise RuntimeError(error.decode())
    return wall, peak[0], int(rss_kb) * 1024


# the Ray engine's first stage on plain Ray tasks (the default) and on Ray Data
CONTENDERS = {"local": ("local", None), "ray": ("ray", {"DEDUP_RAY_SKETCH_ON": "tasks"}),
              "ray-sketch-on-data": ("ray", {"DEDUP_RAY_SKETCH_ON": "data"})}
ROUNDS = int(os.environ.get("DEDUP_BENCH_ROUNDS", "1"))


@pytest.mark.parametrize("level", ["document", "paragraph"])
def test_engines(benchmark, corpus, tmp_path, level):
    benchmark.group = f"dedup run, local and ray engines: generated JSONL, {corpus_mb():g} MB"
    size = corpus.stat().st_size
    info = {"megabytes": round(size / 1e6, 1), "load_before": os.getloadavg()[0]}
    outputs = {}

    def once():
        for contender, (engine, env) in CONTENDERS.items():
            out = tmp_path / contender
            shutil.rmtree(out, ignore_errors=True)
            wall, pss, rss = run_tree(["run", corpus, "-o", out, "--quiet", "--level", level,
                                       "--engine", engine], env)
            summary = json.loads((out / "summary.json").read_text())
            info.setdefault(contender, []).append({
                "wall_s": round(wall, 2), "mb_per_s": round(size / 1e6 / wall, 2),
                "peak_pss_mb": round(pss / 1e6), "child_rss_mb": round(rss / 1e6),
                "load": os.getloadavg()[0], "timings": summary["timings"],
                "engine": summary.get("engine")})
            outputs[contender] = {p.name: p.read_bytes() for p in sorted(out.iterdir())
                                  if p.name != "summary.json"}

    benchmark.pedantic(once, rounds=ROUNDS, iterations=1)
    info["load_after"] = os.getloadavg()[0]
    benchmark.extra_info.update(info)
    print(f"\n{level}: {json.dumps(info)}")
    assert outputs["ray"] == outputs["local"]
    assert outputs["ray-sketch-on-data"] == outputs["local"]

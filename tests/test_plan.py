"""`dedup plan` (dedup/plan.py): the estimate against a real `dedup run` of the same input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.corpus_gen import write_jsonl
from dedup import plan as planning
from dedup.cli import main
from dedup.config import Config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "corpus.jsonl"
    write_jsonl(path, 4, seed=3)
    return path


# Runs the command and prints its CPU seconds and peak RSS. A process forked from pytest
# starts with pytest's peak RSS as its own (Linux keeps the high-water mark of the memory it
# was forked with across exec): this small process forks the run instead.
MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""


def measured_run(corpus, out, level):
    """(CPU seconds, peak RSS bytes, summary, bytes of outputs) of `python -m dedup run`.
    CPU time (user + system, from the OS) rather than wall clock: other tenants of the
    shared machine stretch the wall clock, not the work."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    report = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "dedup", "run",
                             str(corpus), "-o", str(out), "--level", level, "--quiet"],
                            env=env, capture_output=True, text=True, check=True)
    code, cpu, rss_kb = report.stdout.split()
    assert code == "0", report.stderr
    summary = json.loads((out / "summary.json").read_text())
    size = sum((out / name).stat().st_size for name in summary["outputs"])
    return float(cpu), int(rss_kb) * 1024, summary, size


def within_two(estimate, actual):
    return actual / 2 <= estimate <= actual * 2


@pytest.mark.parametrize("level", ["document", "paragraph"])
def test_estimate_within_a_factor_of_two_of_a_real_run(corpus, tmp_path, level):
    estimate = planning.estimate([corpus], Config(unit=level), output=tmp_path / "out")
    cpu, rss, summary, size = measured_run(corpus, tmp_path / "out", level)
    checks = {
        "records": (estimate["records"], summary["counts"]["read"]),
        "units": (estimate["units"], summary["counts"]["units"]),
        "peak memory": (estimate["local"]["peak_memory_mb"] * 1e6, rss),
        "disk": (estimate["disk"]["outputs_mb"] * 1e6, size),
        "time": (estimate["local"]["cpu_seconds"], cpu),
    }
    wrong = {name: pair for name, pair in checks.items() if not within_two(*pair)}
    assert not wrong, f"estimate, actual: {wrong}"
    assert abs(estimate["units"] / summary["counts"]["units"] - 1) < 0.1
    assert estimate["fits_local"] and "local engine fits" in estimate["advice"]


def test_says_when_local_will_not_fit(corpus, monkeypatch):
    monkeypatch.setattr(planning, "_available_memory", lambda: 50_000_000)
    estimate = planning.estimate([corpus], Config(unit="paragraph"))
    assert not estimate["fits_local"]
    assert "will not fit" in estimate["advice"] and "--engine ray" in estimate["advice"]


def test_cli_plan_text_and_json(corpus, capsys):
    assert main(["plan", str(corpus), "--level", "paragraph"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("dedup plan: 1 input file")
    assert "peak memory" in text and "shuffled" in text and "advice" in text
    assert main(["plan", str(corpus), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["level"] == "document" and data["units"] > 1000
    assert set(data["local"]["stages_s"]) == {"sketch", "candidates", "verify", "group", "write"}


def test_compressed_inputs_counted_uncompressed(corpus, tmp_path):
    import gzip

    packed = tmp_path / "corpus.jsonl.gz"
    packed.write_bytes(gzip.compress(corpus.read_bytes()))
    plain = planning.estimate([corpus])
    squeezed = planning.estimate([packed])
    assert squeezed["file_mb"] < plain["file_mb"] / 2
    assert abs(squeezed["units"] / plain["units"] - 1) < 0.1


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "nothing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


@pytest.mark.parametrize("command, example", [("plan", "dedup plan"),
                                              ("run", "--engine ray --ray-address")])
def test_help_shows_an_example(command, example):
    from dedup.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    assert "example:" in sub.format_help() and example in sub.format_help()

"""Markdown table of a benchmark run: medians, MB/s, and ratios against datasketch and rensa
measured in the same run, then the issue's targets as met or short.

    python -m bench.report                      # runs pytest bench/ --benchmark-only, then prints
    python -m bench.report --json RUN.json      # reads a saved pytest-benchmark JSON
    python -m bench.report -- -k signature      # extra pytest arguments after --
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_suite(json_path: Path, pytest_args=()) -> None:
    command = [sys.executable, "-m", "pytest", str(ROOT / "bench"), "--benchmark-only", "-q",
               f"--benchmark-json={json_path}", *pytest_args]
    subprocess.run(command, cwd=ROOT, check=False)


def _label(bench: dict) -> str:
    info = bench.get("extra_info", {})
    name = info.get("contender") or bench["name"].split("[", 1)[-1].rstrip("]")
    if "threads" in info and info.get("contender") == "dedup":
        name += f" ({info['threads']} core{'s' if info['threads'] > 1 else ''})"
    if "article" in info:
        name = f"find_repeats: {info['article']}"
    return name


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _reference(benches: list[dict], contender: str):
    for bench in benches:
        if bench.get("extra_info", {}).get("contender") == contender:
            return bench["stats"]["median"]
    return None


def groups_of(data: dict) -> dict[str, list[dict]]:
    groups = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench.get("group") or bench["name"], []).append(bench)
    return groups


def table(data: dict) -> str:
    lines = []
    for group, benches in groups_of(data).items():
        datasketch = _reference(benches, "datasketch")
        rensa = _reference(benches, "rensa")
        lines += [f"**{group}**", "",
                  "| contender | median | MB/s | × datasketch | × rensa |",
                  "| --- | --- | --- | --- | --- |"]
        for bench in benches:
            median = bench["stats"]["median"]
            megabytes = bench.get("extra_info", {}).get("megabytes")
            rate = f"{megabytes / median:.1f}" if megabytes else "–"
            vs_ds = f"{datasketch / median:.1f}" if datasketch else "–"
            vs_rensa = f"{rensa / median:.2f}" if rensa else "–"
            lines.append(f"| {_label(bench)} | {_time(median)} | {rate} | {vs_ds} | "
                         f"{vs_rensa} |")
        lines.append("")
    return "\n".join(lines)


def _find(data, group_prefix, contender, threads=None):
    for group, benches in groups_of(data).items():
        if not group.startswith(group_prefix):
            continue
        for bench in benches:
            info = bench.get("extra_info", {})
            if info.get("contender") == contender and (threads is None
                                                        or info.get("threads") == threads):
                return bench
    return None


def targets(data: dict) -> str:
    """The issue's targets, each as measured ratio vs goal."""
    rows = []

    def median(prefix, contender, threads=None):
        bench = _find(data, prefix, contender, threads)
        return (bench["stats"]["median"], bench) if bench else (None, None)

    ours1, bench1 = median("signature: char", "dedup", 1)
    ours2, bench2 = median("signature: char", "dedup", 2)
    control = bench2 and bench2["extra_info"].get("control_parallel_speedup")
    ds, _ = median("signature: char", "datasketch")
    rensa, _ = median("signature: char", "rensa")
    index1, _ = median("index", "dedup", 1)
    index_ds, _ = median("index", "datasketch")
    checks = [
        ("signatures, char 5-grams, 1 core: × datasketch", ours1 and ds and ds / ours1, 50),
        ("signatures, char 5-grams, 1 core: × rensa", ours1 and rensa and rensa / ours1, 1.5),
        ("signatures, char 5-grams: 2 cores × 1 core"
         + (f" (a perfectly parallel loop got {control}× then)" if control else ""),
         ours1 and ours2 and ours1 / ours2, 1.8),
        ("text to signatures, MB/s on 1 core (wall)", bench1 and bench1["extra_info"]["megabytes"]
         / ours1, 100),
        ("text to signatures, MB per CPU-second on 1 core", bench1
         and bench1["extra_info"].get("megabytes_per_cpu_second"), 100),
        ("index build + query, 1 core: × datasketch", index1 and index_ds
         and index_ds / index1, 20),
    ]
    rows += ["| target | measured | goal | met |", "| --- | --- | --- | --- |"]
    for name, value, goal in checks:
        if not value:
            rows.append(f"| {name} | not measured | {goal} | – |")
            continue
        rows.append(f"| {name} | {value:.2f} | ≥ {goal} | "
                    f"{'yes' if value >= goal else f'no ({value / goal:.0%} of goal)'} |")
    return "\n".join(rows)


def machine(data: dict) -> str:
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {})
    return (f"{cpu.get('brand_raw', info.get('processor', '?'))}, "
            f"{cpu.get('count', os.cpu_count())} cores, {info.get('system', platform.system())}, "
            f"Python {info.get('python_version', platform.python_version())}; "
            f"run {data.get('datetime', '?')[:16]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Markdown table of a benchmark run")
    parser.add_argument("--json", type=Path, help="a saved pytest-benchmark JSON to read")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    path = args.json
    if path is None:
        path = Path(tempfile.mkdtemp()) / "bench.json"
        run_suite(path, args.pytest_args)
    data = json.loads(path.read_text())
    print(f"Measured on: {machine(data)}\n")
    print(table(data))
    print(targets(data))


if __name__ == "__main__":
    main()

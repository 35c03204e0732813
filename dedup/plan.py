"""`dedup plan`: what a `dedup run` will need, estimated before running it.

A sample of the input (the first records of up to SAMPLE_SHARDS shards spread over the list,
SAMPLE_BYTES in all) gives bytes per record, units per record and characters per unit; the
sizes of the files (compressed ones through the ratio of their first megabyte) give the
totals. Time and memory per stage come from the per-unit and per-megabyte costs measured on
the generated benchmark corpus (COSTS, see there), so the estimate holds for corpora that
repeat about as much as it does (11.7% of documents removed at document level, 19% of
paragraphs at paragraph level); a corpus with many more repeats spends more in verify,
group and write. tests/test_plan.py checks the estimate against a real run.
"""

import gzip
import io
import os
import shutil
import zlib
from pathlib import Path

from dedup.config import Config
from dedup.io import Reader, discover

SAMPLE_BYTES = 4_000_000
SAMPLE_SHARDS = 32
COMPRESSED_PROBE = 1 << 20

# Measured constants, from `dedup run` on bench/.cache/corpus_gen_{1,5,20,200}mb_seed0.jsonl
# (bench/corpus_gen.py, seed 0; 200.8 MB: 84,500 documents, 544,602 paragraphs), default
# settings, on the shared 2-core development machine (AMD EPYC, 24 GiB) at a load average of
# 1.6-2.4, 2026-11-29 04:45-04:50 UTC, /usr/bin/time for wall and peak RSS, summary.json for the
# stages:
# - start: wall of a 1 MB run (process start, imports, numba cache load, Python passes).
# - per_mb (seconds per MB of input) for the passes that stream text (sketch, verify, write);
#   per_unit (seconds per unit) for those over unit arrays (candidates, group).
# - cpu: CPU seconds (user + system) = start + per MB, through the 1 MB and 200 MB runs (the
#   20 MB runs within 10%): what the run costs whatever other tenants do; the wall-clock
#   figures above assume the machine to ourselves. Refitted at 06:50 UTC (load 0.8-1.3, medians
#   of two runs per size) after that day's speed-ups had made the first fit 15-25% high: a
#   fresh CI run measured 1.54 CPU-seconds for an estimate of 3.2 on the test's 4 MB corpus.
# - memory: peak RSS = base + per_unit bytes x units, fitted through the 20 MB and 200 MB runs
#   (the 1 MB and 5 MB runs fall within 2% of the line).
# - repeated: units reported per unit; report_bytes: duplicates.parquet bytes per row;
#   kept_share: kept records' bytes per input byte in collapse mode (flag mode: not measured,
#   taken as 1.05: the records plus their flags).
# - ray: the same stages on Ray (bench/test_bench_ray.py): start of a local Ray, and the
#   factor its tasks took over the local engine's stage time per CPU (exchanges, pickling,
#   task overhead).
COSTS = {
    "document": {
        "start_s": 2.2, "cpu_start_s": 2.3, "cpu_per_mb_s": 0.046,
        "per_mb_s": {"sketch": 0.0226, "verify": 0.0299, "write": 0.0056},
        "per_unit_s": {"candidates": 4.6e-6, "group": 5.4e-6},
        "base_mb": 262.0, "unit_bytes": 850.0,
        "repeated": 0.117, "report_bytes": 30.0, "kept_share": 0.886,
    },
    "paragraph": {
        "start_s": 2.4, "cpu_start_s": 2.1, "cpu_per_mb_s": 0.100,
        "per_mb_s": {"sketch": 0.0414, "verify": 0.0153, "write": 0.0428},
        "per_unit_s": {"candidates": 12.4e-6, "group": 3.4e-6},
        "base_mb": 275.0, "unit_bytes": 340.0,
        "repeated": 0.19, "report_bytes": 21.0, "kept_share": 0.804,
    },
}
COSTS["sentence"] = COSTS["paragraph"]  # not measured separately: paragraphs are the closest
# The Ray engine (bench/test_bench_ray.py and summary.json's engine field on the same corpus,
# 04:49-05:06 UTC, load 2-6): its tasks took about 1.4 times the local engine's CPU time for the
# same stages; about 0.5 GB per worker process with 33 MB pieces. Unit text shuffled to the
# verify partitions per input byte: 0.37 (document), 0.29 (paragraph).
# Refitted after grouping became distributed (08:41-08:52 UTC, load 2.1-3.2, the 20 and 200 MB
# corpora, two interleaved rounds, /tmp/i7/ab2.py in notes/issue-7-s3.md): start_s, the wall of
# starting and stopping a local Ray with its workers, from the 20 MB paragraph runs (10.8-12.6
# s); the driver holds no per-unit data any more: its peak RSS was 243-291 MB at every size and
# level (driver_mb); grouping ships group_bytes per repeated unit (component labels and the
# components' units, edges, copies, statistics and verified pairs: 1.5 MB for 9,848 repeated
# documents, 9.8 MB for 103,330 repeated paragraphs).
RAY = {"start_s": 10.0, "task_factor": 1.4, "worker_mb": 500.0, "driver_mb": 290.0,
       "group_bytes": {"document": 152.0, "paragraph": 95.0, "sentence": 95.0},
       "text_bytes_per_byte": {"document": 0.37, "paragraph": 0.29, "sentence": 0.29}}
STAGES = ("sketch", "candidates", "verify", "group", "write")


def _compression_ratio(shard) -> float:
    """Uncompressed bytes per file byte, from the file's first megabyte (1 when plain)."""
    if shard.compression is None:
        return 1.0
    with open(shard.path, "rb") as handle:
        head = handle.read(COMPRESSED_PROBE)
    if not head:
        return 1.0
    try:
        if shard.compression == "gz":
            data = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(head)
        else:
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(head),
                                                                read_across_frames=True)
            data = bytearray()
            try:
                while chunk := reader.read(1 << 20):
                    data += chunk
            except zstandard.ZstdError:
                pass
    except (zlib.error, EOFError, OSError, gzip.BadGzipFile):
        return 1.0
    return max(1.0, len(data) / len(head))


def _sample(shards, config, text_field, id_field):
    """(bytes, records, units, characters) of the first records of some shards; the bytes
    of a record are its line (JSON Lines), its file (text) or its text (Parquet)."""
    step = max(1, len(shards) // SAMPLE_SHARDS)
    chosen = shards[::step][:SAMPLE_SHARDS]
    budget = max(SAMPLE_BYTES // max(len(chosen), 1), 64_000)
    from dedup.corpus import unit_spans

    n_bytes = n_records = n_units = n_chars = 0
    for shard in chosen:
        taken = 0
        reader = Reader([shard], text_field, id_field, on_reject=lambda reject: None)
        for record in reader.records():
            size = len(record.raw) if type(record.raw) is bytes else \
                len(record.text.encode("utf-8", "surrogatepass"))
            starts, ends = unit_spans(record.text, config.unit)
            n_bytes += size
            n_records += 1
            n_units += len(starts)
            n_chars += sum(e - s for s, e in zip(starts, ends))
            taken += size
            if taken >= budget:
                break
    return n_bytes, n_records, n_units, n_chars


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def estimate(inputs, config: Config | None = None, *, mode="collapse", text_field="text",
             id_field=None, output=None, cpus=None) -> dict:
    """The estimate of a `dedup run` over inputs: units, memory, disk and time per stage, for
    the local engine on this machine and the Ray engine, and which engine fits.

    Returns a dict (JSON-ready): sizes, counts, local (time per stage, peak memory), ray
    (shuffled bytes per exchange, driver and worker memory, time on this machine's CPUs),
    disk, available memory and disk, and advice (one line). Raises InputError as dedup run
    does for inputs it cannot find.
    """
    config = config or Config(unit="document")
    shards = discover(list(inputs))
    file_bytes = sum(s.size for s in shards)
    rows = [s for s in shards if s.format == "parquet"]
    lines = [s for s in shards if s.format != "parquet"]
    # JSON Lines and text: records from their (uncompressed) bytes; Parquet: from its metadata
    data_bytes = sum(s.size * _compression_ratio(s) for s in lines)
    s_bytes, s_records, s_units, s_chars = _sample(lines, config, text_field, id_field) \
        if lines else (0, 0, 0, 0)
    records = data_bytes / s_bytes * s_records if s_bytes else 0
    if rows:
        import pyarrow.parquet as pq

        n_rows = 0
        for shard in rows:
            try:
                n_rows += pq.ParquetFile(shard.path).metadata.num_rows
            except Exception:  # an unreadable file is the run's error to report, not ours
                pass
        p_bytes, p_records, p_units, p_chars = _sample(rows, config, text_field, id_field)
        if p_records:
            data_bytes += n_rows * p_bytes / p_records
            records += n_rows
        s_bytes, s_records = s_bytes + p_bytes, s_records + p_records
        s_units, s_chars = s_units + p_units, s_chars + p_chars
    mb = data_bytes / 1e6
    units = records * s_units / s_records if s_records else 0
    chars_per_unit = s_chars / s_units if s_units else 0
    cost = COSTS[config.unit]
    stage_s = {name: cost["per_mb_s"][name] * mb for name in cost["per_mb_s"]}
    stage_s.update({name: cost["per_unit_s"][name] * units for name in cost["per_unit_s"]})
    local_s = cost["start_s"] + sum(stage_s.values())
    local_mb = cost["base_mb"] + cost["unit_bytes"] * units / 1e6
    repeated = units * cost["repeated"]
    report_mb = repeated * cost["report_bytes"] / 1e6
    out_mb = file_bytes / 1e6 * (1.05 if mode == "flag" else cost["kept_share"]) + report_mb
    cpus = cpus or os.cpu_count() or 1
    n_bands, _ = config.band_rows
    shuffle = {
        "band_keys_mb": units * n_bands * 26 / 1e6,
        "exact_hashes_mb": units * 16 / 1e6,
        "unit_texts_mb": mb * RAY["text_bytes_per_byte"][config.unit],
        "grouping_mb": repeated * RAY["group_bytes"][config.unit] / 1e6,
    }
    # every stage, grouping included, is divided among the cluster's CPUs; the driver holds
    # counts per task, nothing per unit
    cpu_s = cost["cpu_per_mb_s"] * mb
    ray_s = RAY["start_s"] + RAY["task_factor"] * cpu_s / cpus
    driver_mb = RAY["driver_mb"]
    available = _available_memory()
    where = Path(output) if output else Path.cwd()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    fits_memory = available is None or local_mb * 1e6 < 0.8 * available
    fits_disk = out_mb * 1e6 < free
    if not fits_disk:
        advice = (f"not enough disk at {where}: the outputs need about {out_mb:,.0f} MB, "
                  f"{free / 1e6:,.0f} MB free; choose another -o")
    elif not fits_memory:
        advice = (f"the local engine will not fit: about {local_mb:,.0f} MB of memory, "
                  f"{available / 1e6:,.0f} MB available; use --engine ray on a cluster")
    elif local_s > 24 * 3600:
        advice = (f"the local engine fits but takes about {local_s / 3600:,.0f} h on "
                  f"{cpus} CPUs; a Ray cluster (--engine ray --ray-address) divides every "
                  "stage by its CPUs")
    else:
        advice = "the local engine fits on this machine"
    return {
        "inputs": len(shards),
        "file_mb": round(file_bytes / 1e6, 1),
        "data_mb": round(mb, 1),
        "level": config.unit,
        "records": round(records),
        "units": round(units),
        "chars_per_unit": round(chars_per_unit, 1),
        "sample": {"bytes": s_bytes, "records": s_records, "units": s_units},
        "local": {
            "seconds": round(local_s, 1),
            "cpu_seconds": round(cost["cpu_start_s"] + cost["cpu_per_mb_s"] * mb, 1),
            "stages_s": {name: round(stage_s[name], 2) for name in STAGES},
            "start_s": cost["start_s"],
            "peak_memory_mb": round(local_mb),
            "units_memory_mb": round(cost["unit_bytes"] * units / 1e6, 1),
        },
        "ray": {
            "cpus": cpus,
            "seconds": round(ray_s, 1),
            "shuffle_mb": {k: round(v, 1) for k, v in shuffle.items()},
            "driver_memory_mb": round(driver_mb),
            "worker_memory_mb": RAY["worker_mb"],
        },
        "disk": {"outputs_mb": round(out_mb, 1), "report_mb": round(report_mb, 1),
                 "free_mb": round(free / 1e6), "where": str(where)},
        "available_memory_mb": round(available / 1e6) if available else None,
        "fits_local": bool(fits_memory and fits_disk),
        "advice": advice,
    }


def format_plan(plan: dict) -> str:
    """The estimate as a few lines for the terminal."""
    local, ray, disk = plan["local"], plan["ray"], plan["disk"]
    stages = ", ".join(f"{name} {seconds:.1f}" for name, seconds in local["stages_s"].items())
    shuffle = ", ".join(f"{name[:-3].replace('_', ' ')} {mb:,.0f} MB"
                        for name, mb in ray["shuffle_mb"].items())
    lines = [
        f"dedup plan: {plan['inputs']} input file{'s' if plan['inputs'] != 1 else ''}, "
        f"{plan['file_mb']:,} MB ({plan['data_mb']:,} MB uncompressed), {plan['level']} level",
        f"  units    about {plan['units']:,} ({plan['records']:,.0f} records, "
        f"{plan['chars_per_unit']:,.0f} characters per unit)",
        f"  local    about {local['seconds']:,.1f} s ({stages}; start {local['start_s']}; "
        f"{local['cpu_seconds']:,.1f} CPU s), "
        f"peak memory about {local['peak_memory_mb']:,} MB",
        f"  ray      about {ray['seconds']:,.1f} s on {ray['cpus']} CPUs; shuffled: {shuffle}; "
        f"driver about {ray['driver_memory_mb']:,} MB, {ray['worker_memory_mb']:,.0f} MB "
        "per worker",
        f"  disk     about {disk['outputs_mb']:,.1f} MB of outputs "
        f"({disk['free_mb']:,} MB free at {disk['where']})",
        f"  advice   {plan['advice']}",
    ]
    return "\n".join(lines) + "\n"

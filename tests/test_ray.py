"""`dedup run --engine ray` gives the local engine's outputs byte for byte (dedup/engine_ray.py).

One local Ray with 2 CPUs and a small object store serves the whole module (starting Ray costs
seconds). Large files are split into pieces of a few kilobytes and the exchanges into three
partitions, so that every stage really runs as several tasks.
"""

import gzip
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.corpus_gen import Generator, Shape
from dedup.cli import main
from dedup.config import Config
from dedup.corpus import run_files

SHAPE = Shape(paragraphs=(1, 5), words=(15, 50), near_copies=0.2, exact_copies=0.08)
PIECE_BYTES = 20_000
PARTITIONS = 3
# summary.json fields that describe the engine's work, not the results
ENGINE_FIELDS = ("timings", "mb_per_s", "records_per_s", "engine")
ENGINE_COUNTS = ("peak_cached_shingles", "regroup_passes")


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    ray.init(address="local", num_cpus=2, object_store_memory=300 << 20,
             include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _lines(rows):
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four shards in corpus order: a plain file split into pieces, a .gz, a Parquet file and a
    text file; copies across all of them."""
    rows = list(Generator(7, SHAPE).documents(700))
    folder = tmp_path_factory.mktemp("corpus") / "in"
    (folder / "more").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(_lines(rows[:400]))
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(_lines(rows[400:550]), mtime=0))
    table = pa.table({"id": [r["id"] for r in rows[550:]], "text": [r["text"] for r in rows[550:]]})
    pq.write_table(table, folder / "more" / "c.parquet", row_group_size=60)
    (folder / "more" / "d.txt").write_text(rows[10]["text"], encoding="utf-8")
    return folder


def outputs(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "summary.json"}


def results(summary):
    """summary.json without the fields about how the engine worked."""
    kept = {k: v for k, v in summary.items() if k not in ENGINE_FIELDS}
    kept["counts"] = {k: v for k, v in summary["counts"].items() if k not in ENGINE_COUNTS}
    return kept


def both(tmp_path, inputs, config, mode="collapse", **options):
    """(local outputs, local summary, ray outputs, ray summary) of the same run."""
    from dedup.engine_ray import run_ray

    local = run_files(inputs, tmp_path / "local", config, mode, **options)
    remote = run_ray(inputs, tmp_path / "ray", config, mode, piece_bytes=PIECE_BYTES,
                     partitions=PARTITIONS, **options)
    on_disk = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert on_disk["engine"]["name"] == "ray"
    return outputs(tmp_path / "local"), local, outputs(tmp_path / "ray"), remote


@pytest.mark.parametrize("level", ["document", "paragraph"])
@pytest.mark.parametrize("mode", ["collapse", "flag"])
def test_same_outputs_as_local(ray_session, corpus, tmp_path, level, mode):
    local_out, local, ray_out, remote = both(tmp_path, [corpus], Config(unit=level), mode,
                                             duplicates_jsonl=True)
    assert set(ray_out) == set(local_out)
    assert {"a.jsonl", "b.jsonl.gz", "more/c.parquet", "duplicates.parquet",
            "duplicates.jsonl"} <= set(local_out)
    for name in local_out:
        assert ray_out[name] == local_out[name], name
    assert results(remote) == results(local)
    assert remote["engine"]["pieces"] > 4  # a.jsonl was split: several tasks per stage
    counts = local["counts"]
    assert counts["units_repeated"] > 50 and counts["candidate_pairs"] > 100


def test_same_outputs_with_star_buckets_and_regrouping(ray_session, corpus, tmp_path):
    """Buckets over max_bucket are stars around their first unit, as locally, and the
    grouping's extra verification rounds run as distributed rounds."""
    config = Config(unit="paragraph", max_bucket=2)
    local_out, local, ray_out, remote = both(tmp_path, [corpus], config)
    assert ray_out == local_out
    assert results(remote) == results(local)
    assert local["counts"]["regroup_pairs"] > 0


def test_same_outputs_all_pairs_path(ray_session, tmp_path):
    """A small corpus: every pair of distinct units is verified (config.exhaustive_pairs)."""
    rows = list(Generator(3, SHAPE).documents(60))
    (tmp_path / "small.jsonl").write_bytes(_lines(rows))
    config = Config(unit="document")
    local_out, local, ray_out, remote = both(tmp_path, [tmp_path / "small.jsonl"], config)
    heads = local["counts"]["distinct_units"]
    assert heads * (heads - 1) // 2 <= config.exhaustive_pairs
    assert local["counts"]["candidate_pairs"] == heads * (heads - 1) // 2
    assert ray_out == local_out and results(remote) == results(local)


def test_cli_engine_ray_matches_local(ray_session, corpus, tmp_path):
    common = ["run", str(corpus), "--level", "paragraph", "--quiet", "--duplicates-jsonl",
              "--id-field", "id", "--on-error", "skip"]
    assert main(common + ["-o", str(tmp_path / "local")]) == 0
    assert main(common + ["-o", str(tmp_path / "ray"), "--engine", "ray"]) == 0
    local = outputs(tmp_path / "local")
    assert outputs(tmp_path / "ray") == local
    assert "rejects.jsonl" in local
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["engine"]["name"] == "ray" and summary["engine"]["cpus"] == 2


def _error(capsys, argv):
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("line, problem", [
    (b'{"id": "x", "text": "broken\n', "not valid JSON"),
    (b'{"id": "x", "body": "no text"}\n', 'field "text" is missing'),
    (b'{"id": "x", "text": 42}\n', 'field "text" is not a string'),
    (b'{"id": "x", "text": "bad \xff byte"}\n', "not UTF-8"),
])
def test_bad_input_same_error_and_skip_mode(ray_session, tmp_path, capsys, line, problem):
    rows = list(Generator(5, SHAPE).documents(120))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(_lines(rows[:60]))
    data = _lines(rows[60:])
    cut = data.index(b"\n", len(data) // 2) + 1
    (folder / "b.jsonl").write_bytes(data[:cut] + line + data[cut:])
    argv = ["run", str(folder), "--quiet"]
    local = _error(capsys, argv + ["-o", str(tmp_path / "l1")])
    ray = _error(capsys, argv + ["-o", str(tmp_path / "r1"), "--engine", "ray"])
    assert local[0] == ray[0] == 2
    assert ray[1] == local[1]
    assert ray[1].count("\n") == 1 and "b.jsonl line " in ray[1] and problem in ray[1]
    assert not (tmp_path / "r1").exists() or not any((tmp_path / "r1").iterdir())
    assert main(argv + ["-o", str(tmp_path / "l2"), "--on-error", "skip"]) == 0
    assert main(argv + ["-o", str(tmp_path / "r2"), "--on-error", "skip", "--engine", "ray"]) == 0
    local_out, ray_out = outputs(tmp_path / "l2"), outputs(tmp_path / "r2")
    assert ray_out == local_out
    assert local_out["rejects.jsonl"].count(b"\n") == 1


def test_empty_and_unreadable_shards_as_local(ray_session, corpus, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes((corpus / "a.jsonl").read_bytes()[:30_000].rsplit(
        b"\n", 1)[0] + b"\n")
    (folder / "b.jsonl").write_bytes(b"")
    (folder / "c.jsonl.gz").write_bytes(gzip.compress(_lines([{"text": "x " * 50}]))[:-9])
    local_out, local, ray_out, remote = both(tmp_path, [folder], Config(unit="document"),
                                             on_error="skip")
    assert ray_out == local_out and results(remote) == results(local)
    # the truncated stream is a rejected record; the empty file is a rejected file, no record
    assert local["counts"]["rejected"] == 1 and local["counts"]["rejected_files"] == 1
    assert [remote["counts"][k] for k in ("read", "rejected", "rejected_files")] == [
        local["counts"][k] for k in ("read", "rejected", "rejected_files")]


@pytest.mark.parametrize("stage", ["sketch", "verify", "group", "write"])
def test_killed_worker_is_retried_and_outputs_unchanged(ray_session, corpus, tmp_path, stage):
    """One worker process is killed (SIGKILL, by its own task) in the middle of the run; Ray
    runs the task again on another worker, and every output is the same."""
    from dedup.engine_ray import run_ray

    config = Config(unit="paragraph")
    run_files([corpus], tmp_path / "local", config, duplicates_jsonl=True)
    marker = tmp_path / f"killed-{stage}"
    run_ray([corpus], tmp_path / "ray", config, duplicates_jsonl=True, piece_bytes=PIECE_BYTES,
            partitions=PARTITIONS, _kill=(stage, str(marker)))
    assert marker.exists()  # a worker really died
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")


def test_without_ray_one_line_saying_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    rows = list(Generator(5, SHAPE).documents(10))
    (tmp_path / "a.jsonl").write_bytes(_lines(rows))
    code, err = _error(capsys, ["run", str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "out"),
                                "--engine", "ray"])
    assert code == 2
    assert err == ("dedup: error: --engine ray needs Ray: pip install 'dedup[ray]' "
                   "(or pip install 'ray')\n")
    assert not (tmp_path / "out").exists()


def test_without_ray_data_one_line_saying_how_to_install(tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    monkeypatch.setitem(sys.modules, "ray.data", None)  # as with 'ray' but not 'ray[data]'
    rows = list(Generator(5, SHAPE).documents(10))
    (tmp_path / "a.jsonl").write_bytes(_lines(rows))
    code, err = _error(capsys, ["run", str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "out"),
                                "--engine", "ray", "--ray-sketch", "data"])
    assert code == 2
    assert err == ("dedup: error: --ray-sketch data needs Ray Data: pip install 'dedup[ray]' "
                   "(or pip install 'ray[data]')\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--ray-address", "auto"), ("--ray-sketch", "data")])
def test_ray_flags_need_engine_ray(tmp_path, capsys, flag, value):
    code, err = _error(capsys, ["run", str(tmp_path), "-o", str(tmp_path / "o"), flag, value])
    assert code == 2 and err == f"dedup: error: {flag} needs --engine ray\n"


def test_parquet_without_the_column_same_error_and_skip(ray_session, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rows = list(Generator(6, SHAPE).documents(40))
    (folder / "a.jsonl").write_bytes(_lines(rows))
    pq.write_table(pa.table({"body": ["no text column"]}), folder / "b.parquet")
    argv = ["run", str(folder), "--quiet"]
    local = _error(capsys, argv + ["-o", str(tmp_path / "l1")])
    ray = _error(capsys, argv + ["-o", str(tmp_path / "r1"), "--engine", "ray"])
    assert local[0] == ray[0] == 2 and ray[1] == local[1]
    assert 'b.parquet: column "text" is missing' in ray[1] and ray[1].count("\n") == 1
    assert main(argv + ["-o", str(tmp_path / "l2"), "--on-error", "skip"]) == 0
    assert main(argv + ["-o", str(tmp_path / "r2"), "--on-error", "skip", "--engine", "ray"]) == 0
    local_out = outputs(tmp_path / "l2")
    assert outputs(tmp_path / "r2") == local_out
    assert "b.parquet" not in local_out and b"b.parquet" in local_out["rejects.jsonl"]


def test_unreachable_ray_address_fails_in_one_line_after_a_bounded_wait(tmp_path, capfd):
    """A port that accepts connections but is no Ray cluster: ray.init would retry for
    minutes; the run gives up after the wait it was given, with one line naming the address."""
    import socket

    pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]'")
    from dedup.engine_ray import _check_reachable
    from dedup.errors import InputError

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        address = "127.0.0.1:%d" % listener.getsockname()[1]
        with pytest.raises(InputError, match="no Ray cluster answered within 1 s") as caught:
            _check_reachable(address, wait_s=1)
    message = str(caught.value)
    assert message.startswith(f"--ray-address {address}: cannot connect") and "\n" not in message
    assert capfd.readouterr().err == ""  # Ray's own log lines of the failed attempts are held back


def _components_distributed(n_parts, edges, copies):
    """The Ray engine's component stage (cc_start, cc_round until no message, cc_finish) run
    in this process: {unit: label} and the units each group partition received."""
    from dedup import engine_ray as er

    def split(left, right, side):
        by = left if side == 0 else right
        return er._split_by(er._partition_of(by.astype("uint64"), n_parts), n_parts, left, right)

    el, er_ = (np.array(c, dtype=np.int64) for c in zip(*edges)) if edges else \
        (np.zeros(0, np.int64),) * 2
    cl, cr = (np.array(c, dtype=np.int64) for c in zip(*copies)) if copies else \
        (np.zeros(0, np.int64),) * 2
    ones = np.ones(el.size)
    by_left = er._split_by(er._partition_of(el.astype("uint64"), n_parts), n_parts, el, er_,
                           ones, ones)
    by_right = split(er_, el, 0)
    copy_parts = split(cl, cr, 0)
    head_parts = split(cr, cl, 0)
    states = [er.cc_start(n_parts, {"edges": by_left[j], "adj": by_right[j]},
                          {"copies": copy_parts[j], "adj": head_parts[j]})
              for j in range(n_parts)]
    while sum(s[1] for s in states):
        states = [er.cc_round(n_parts, states[j][0], *[s[2 + j] for s in states])
                  for j in range(n_parts)]
    labels = {}
    for state, *_ in states:
        labels.update(zip(state["units"].tolist(), state["labels"].tolist()))
    finished = [er.cc_finish(n_parts, s[0]) for s in states]
    if n_parts == 1:
        finished = [[f] for f in finished]
    received = [set(np.concatenate([f[g]["units"][0] for f in finished]).tolist())
                for g in range(n_parts)]
    return labels, received


def _components_reference(links):
    """{unit: smallest unit of its component}, by reference.components (a graph search) over
    the units renumbered densely."""
    import reference

    units = sorted({u for link in links for u in link})
    index = {u: k for k, u in enumerate(units)}
    labels = reference.components(len(units), [(index[a], index[b]) for a, b in links])
    return {u: units[label] for u, label in zip(units, labels)}


@settings(max_examples=60, deadline=None)
@given(links=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=60),
       n_parts=st.integers(1, 4), shift=st.sampled_from([0, 1 << 33, (1 << 62) - 100]))
def test_distributed_components_equal_a_reference(links, n_parts, shift):
    """Smallest-label propagation over partitions gives every unit the smallest unit of its
    component (ids beyond 32 bits too), and each group partition receives whole components."""
    links = [(a + shift, b + shift) for a, b in links if a != b]
    edges = [(min(a, b), max(a, b)) for a, b in links[::2]]
    copies = [(max(a, b), min(a, b)) for a, b in links[1::2]]  # (copy, its head)
    labels, received = _components_distributed(n_parts, edges, copies)
    expected = _components_reference(links)
    assert labels == expected
    for units in received:
        assert all(all(expected[v] != expected[u] or v in units for v in expected)
                   for u in units)
    assert set().union(*received) == set(expected)


def test_distinct_pairs_keep_64_bit_ids():
    from dedup.engine_ray import _distinct_pairs, _pair_partition_of

    big = np.array([1 << 40, 1 << 40, 3, 1 << 40], dtype=np.int64)
    other = np.array([(1 << 41) + 1, (1 << 41) + 1, 1 << 35, 5], dtype=np.int64)
    left, right = _distinct_pairs(big, other)
    assert list(zip(left.tolist(), right.tolist())) == [
        (3, 1 << 35), (1 << 40, 5), (1 << 40, (1 << 41) + 1)]
    parts = _pair_partition_of(big, other, 7)
    assert parts[0] == parts[1] and ((parts >= 0) & (parts < 7)).all()


def test_sketch_stage_on_ray_data_same_outputs_errors_and_retries(ray_session, corpus, tmp_path,
                                                                  capsys):
    """--ray-sketch data: the sketch stage as Ray Data map_batches gives the same
    outputs, Ray Data retries a map task whose worker was killed, and the first bad record in
    corpus order is the error, as locally."""
    from dedup.engine_ray import run_ray
    from dedup.errors import InputError

    config = Config(unit="paragraph")
    run_files([corpus], tmp_path / "local", config, duplicates_jsonl=True)
    marker = tmp_path / "killed-sketch"
    summary = run_ray([corpus], tmp_path / "ray", config, duplicates_jsonl=True,
                      piece_bytes=PIECE_BYTES, partitions=PARTITIONS,
                      _kill=("sketch", str(marker)), sketch_on="data")
    assert marker.exists() and summary["engine"]["sketch_on"] == "data"
    assert outputs(tmp_path / "ray") == outputs(tmp_path / "local")
    rows = list(Generator(5, SHAPE).documents(200))
    data = _lines(rows)
    cuts = [data.index(b"\n", len(data) * k // 4) + 1 for k in (1, 3)]
    bad = (data[:cuts[0]] + b'{"text": 1}\n' + data[cuts[0]:cuts[1]] + b"{broken\n"
           + data[cuts[1]:])
    (tmp_path / "bad.jsonl").write_bytes(bad)
    with pytest.raises(InputError) as local:
        run_files([tmp_path / "bad.jsonl"], tmp_path / "l2", config)
    code, err = _error(capsys, ["run", str(tmp_path / "bad.jsonl"), "-o", str(tmp_path / "r2"),
                                "--unit", "paragraph", "--engine", "ray", "--ray-sketch", "data",
                                "--quiet"])  # the CLI's flag reaches the engine
    assert code == 2 and err == f"dedup: error: {local.value}\n" and 'field "text"' in err


def test_progress_on_a_terminal(ray_session, corpus, tmp_path):
    """Not quiet, on a terminal: each stage is named, and pieces are counted as they end."""
    import io

    from dedup.engine_ray import run_ray

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    summary = run_ray([corpus], tmp_path / "ray", Config(unit="document"),
                      piece_bytes=PIECE_BYTES, partitions=PARTITIONS, quiet=False,
                      stream=terminal)
    shown = terminal.getvalue()
    n = summary["engine"]["pieces"]
    for stage in ("sketch", "candidates", "verify", "group", "write"):
        assert f"dedup run (ray): {stage}" in shown
    assert f"pieces sketched {n}/{n}\n" in shown and f"pieces written {n}/{n}\n" in shown

"""The `dedup` command. It holds no logic the library lacks: it reads files, calls dedup.api,
prints. A DedupError is printed as one line with a non-zero exit; anything else is our bug."""

import argparse
import json
import os
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from dedup import __version__
from dedup.api import collapse, explain, find_repeats
from dedup.config import KEEPS, SHINGLES, UNITS, Config
from dedup.errors import DedupError, InputError

EXCERPT = 60

FIND_EXAMPLE = """example:
  dedup find                         # the bundled sample article (seeds/)
  dedup find article.txt --json      # one JSON object per file
  dedup find corpus_dir/ --unit sentence --threshold 0.7
"""
COLLAPSE_EXAMPLE = """example:
  dedup collapse article.txt -o article.clean.txt
  dedup collapse article.txt --keep longest > clean.txt
"""
EXPLAIN_EXAMPLE = """example:
  dedup explain a.txt b.txt
  dedup explain a.txt b.txt --json
"""
RUN_EXAMPLE = """example:
  dedup run corpus/ -o clean/                      # near-duplicate documents removed
  dedup run 'crawl/*.jsonl.zst' -o clean/ --level paragraph --mode flag
  dedup run corpus/ -o clean/ --engine ray --ray-address auto   # on a running Ray cluster
  dedup run data.parquet -o clean/ --text-field body --id-field url --on-error skip
  dedup run day2.jsonl -o clean2/ --id-field url --index seen.idx   # against earlier days
"""

PLAN_EXAMPLE = """example:
  dedup plan corpus/                            # units, memory, disk and time per stage
  dedup plan 'crawl/*.jsonl.zst' --level paragraph -o /data/clean --json
"""

INDEX_EXAMPLE = """example:
  dedup index add news.idx day1/                 # store every .txt file (key: its path)
  dedup index check news.idx article.txt         # duplicate of a stored file? repeated lines?
  dedup index add news.idx day2/ --json          # store, one verdict per file as JSON
  dedup index stats news.idx
"""

def _seed_dir() -> Path:
    packaged = Path(__file__).parent / "seeds"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "seeds"


def read_text(path: Path) -> str:
    """The UTF-8 text of a file, line ends as they are; a clear InputError otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
            f"{err.start})"
        ) from None


def expand_inputs(names: list[str]) -> list[Path]:
    """Files named, and the .txt files (sorted) of folders named."""
    paths = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise InputError(f"{path}: folder holds no .txt files")
            paths.extend(found)
        elif not path.exists():
            raise InputError(f"{path}: no such file")
        else:
            paths.append(path)
    return paths


def _add_config_options(parser):
    parser.add_argument("--unit", choices=UNITS, default="paragraph",
                        help="what is compared (default: paragraph, every non-blank line)")
    parser.add_argument("--shingle", choices=SHINGLES, default="char",
                        help="character or word n-grams (default: char)")
    parser.add_argument("--ngram", type=int, default=5, help="n-gram size (default: 5)")
    parser.add_argument("--threshold", type=float, default=0.8,
                        help="Jaccard similarity of near-duplicates (default: 0.8)")
    parser.add_argument("--containment-threshold", type=float, default=0.9,
                        help="share of a unit found in a larger one to call it contained (0.9)")
    parser.add_argument("--min-contained-length", type=int, default=40,
                        help="normalized characters a contained copy needs (default: 40)")
    parser.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (128)")
    parser.add_argument("--seed", type=int, default=1, help="MinHash seed (default: 1)")
    parser.add_argument("--keep", choices=KEEPS, default="first",
                        help="which copy a group keeps (default: first)")


def _config(args) -> Config:
    names = {f.name for f in fields(Config)}
    return Config(**{k: v for k, v in vars(args).items() if k in names})


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[:EXCERPT - 1] + "…"


def cmd_find(args, out) -> int:
    config = _config(args)
    paths = expand_inputs(args.files) if args.files else expand_inputs([str(_seed_dir())])
    for path in paths:
        groups = find_repeats(read_text(path), config)
        if args.json:
            record = {"file": str(path), "groups": [g.to_dict() for g in groups]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            continue
        out.write(f"{path}: {len(groups)} repeated group{'s' if len(groups) != 1 else ''}\n")
        for number, group in enumerate(groups, 1):
            kinds = sorted({m.kind for m in group.repeats})
            out.write(f"  group {number}: {', '.join(kinds)}, {len(group.members)} members\n")
            for member in group.members:
                label = "kept" if member.is_representative else \
                    f"{member.kind} {member.similarity:.3f}"
                out.write(f"    line {member.line:>4}  {label:<15} {_excerpt(member.text)}\n")
    return 0


def _write_atomic(path: Path, data: bytes):
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_collapse(args, out) -> int:
    config = _config(args)
    text = collapse(read_text(Path(args.file)), config)
    data = text.encode("utf-8", "surrogatepass")
    if args.output:
        try:
            _write_atomic(Path(args.output), data)
        except OSError as err:
            raise InputError(f"{args.output}: cannot write ({err.strerror})") from None
    else:
        out.flush()
        getattr(out, "buffer", out).write(data)
    return 0


def cmd_explain(args, out) -> int:
    config = _config(args)
    a, b = read_text(Path(args.a)), read_text(Path(args.b))
    result = explain(a, b, config)
    if args.json:
        out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        return 0
    out.write(f"verdict: {result.verdict or 'no repeat'}\n")
    out.write(f"jaccard {result.jaccard:.3f}, containment a in b {result.containment_a_in_b:.3f}, "
              f"b in a {result.containment_b_in_a:.3f}, minhash estimate "
              f"{result.minhash_estimate:.3f}\n")
    out.write(f"shingles: a {result.shingles_a}, b {result.shingles_b}, "
              f"shared {result.shingles_shared}\n")
    out.write(f"LSH: {len(result.bands_collided)} of {result.bands} bands ({result.rows} rows) "
              f"collided{': ' + ' '.join(map(str, result.bands_collided)) if result.bands_collided else ''}\n")
    for p in result.passages:
        out.write(f"shared passage ({p.length} chars): a[{p.a_start}:{p.a_end}] "
                  f"b[{p.b_start}:{p.b_end}]  {_excerpt(a[p.a_start:p.a_end])}\n")
    return 0


def cmd_run_ray(args) -> int:
    """`dedup run --engine ray`: the same run on Ray (dedup.engine_ray)."""
    from dedup.corpus import format_summary
    from dedup.engine_ray import run_ray

    config = _config(args)
    if args.batch_mb is not None and args.batch_mb <= 0:
        raise InputError(f"--batch-mb must be > 0, got {args.batch_mb}")
    if getattr(args, "index", None) is not None:
        raise InputError("--index works with the local engine only (drop --engine ray)")
    summary = run_ray(
        args.inputs, args.output, config, args.mode, text_field=args.text_field,
        id_field=args.id_field, on_error=args.on_error, flag_field=args.flag_field,
        duplicates_jsonl=args.duplicates_jsonl, overwrite=args.overwrite,
        batch_chars=max(1, int(args.batch_mb * 1e6)) if args.batch_mb else None,
        ray_address=args.ray_address, num_cpus=args.workers, quiet=args.quiet,
        stream=sys.stderr, sketch_on=args.ray_sketch,
    )
    if not args.quiet:
        sys.stderr.write(format_summary(summary))
    return 0


def cmd_plan(args, out) -> int:
    from dedup.plan import estimate, format_plan

    result = estimate(args.inputs, _config(args), mode=args.mode, text_field=args.text_field,
                      id_field=args.id_field, output=args.output)
    out.write(json.dumps(result) + "\n" if args.json else format_plan(result))
    return 0


def cmd_run(args, out) -> int:
    from dedup.corpus import DEFAULT_BATCH_CHARS, format_summary, run_files

    if args.engine == "ray":
        return cmd_run_ray(args)
    for flag, value in (("--ray-address", args.ray_address), ("--ray-sketch", args.ray_sketch)):
        if value is not None:
            raise InputError(f"{flag} needs --engine ray")
    config = _config(args)
    if args.batch_mb is not None and args.batch_mb <= 0:
        raise InputError(f"--batch-mb must be > 0, got {args.batch_mb}")
    if args.index_read_only and args.index is None:
        raise InputError("--index-read-only needs --index PATH")
    summary = run_files(
        args.inputs, args.output, config, args.mode, text_field=args.text_field,
        id_field=args.id_field, on_error=args.on_error, flag_field=args.flag_field,
        duplicates_jsonl=args.duplicates_jsonl, overwrite=args.overwrite,
        batch_chars=max(1, int(args.batch_mb * 1e6)) if args.batch_mb else DEFAULT_BATCH_CHARS,
        workers=args.workers, quiet=args.quiet, stream=sys.stderr,
        index=args.index, index_read_only=args.index_read_only,
    )
    if not args.quiet:
        sys.stderr.write(format_summary(summary))
    return 0


def _index_config(args) -> Config | None:
    """A Config from the index options given, or None: an existing index keeps its own."""
    given = {name: getattr(args, name) for name in ("shingle", "ngram", "num_perm", "seed",
                                                    "threshold")
             if getattr(args, name, None) is not None}
    return Config(**given) if given else None


def _write_verdict(out, name: str, verdict) -> None:
    if verdict.is_duplicate:
        best = next(m for m in verdict.matches if m.is_inside_stored)
        status = f"duplicate of {best.key} ({best.kind} {best.similarity:.3f})"
    elif verdict.matches:
        best = verdict.matches[0]
        status = f"new, contains {best.key} ({best.kind} {best.similarity:.3f})"
    else:
        status = "new"
    if not verdict.is_added and verdict.key is not None:
        status += ", already stored"
    count = len(verdict.paragraphs)
    if count:
        status += f", {count} repeated paragraph{'s' if count != 1 else ''}"
    out.write(f"{name}: {status}\n")
    for p in verdict.paragraphs:
        where = f"{p.key} line {p.repeats_line}" if p.key is not None else \
            f"line {p.repeats_line}"
        out.write(f"    line {p.line:>4}  {p.kind} {p.similarity:.3f} of {where}\n")


def cmd_index(args, out) -> int:
    from dedup.index import Index

    if args.action == "stats":
        with Index.open(args.path, _index_config(args), read_only=True) as index:
            stats = index.stats()
            if args.verify:
                problems = index.integrity_check()
                stats["problems"] = problems
        if args.json:
            out.write(json.dumps(stats) + "\n")
        else:
            for name, value in stats.items():
                if name not in ("config", "problems"):
                    out.write(f"{name}: {value}\n")
            if args.verify:
                out.write(f"integrity: {'ok' if not stats['problems'] else stats['problems']}\n")
        if args.verify and stats["problems"]:
            raise InputError(f"{args.path}: integrity check failed: {stats['problems'][0]}")
        return 0
    paths = expand_inputs(args.files)
    with Index.open(args.path, _index_config(args), read_only=args.action == "check") as index:
        for path in paths:
            text = read_text(path)
            if args.action == "add":
                verdict = index.add(str(path), text, replace=args.replace)
            else:
                verdict = index.check(text)
            if args.json:
                record = {"file": str(path), **verdict.to_dict()}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                _write_verdict(out, str(path), verdict)
    return 0

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dedup", description="Find and remove repeated and near-duplicate text.")
    parser.add_argument("--version", action="version", version=f"dedup {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    find = sub.add_parser("find", help="print the repeated groups of each text file",
                          epilog=FIND_EXAMPLE, formatter_class=formatter)
    find.add_argument("files", nargs="*", help="text files or folders (default: bundled seeds/)")
    find.add_argument("--json", action="store_true", help="one JSON object per file")
    _add_config_options(find)
    find.set_defaults(handler=cmd_find)

    col = sub.add_parser("collapse", help="write a text file with its repeats removed",
                         epilog=COLLAPSE_EXAMPLE, formatter_class=formatter)
    col.add_argument("file")
    col.add_argument("-o", "--output", help="write here (atomically) instead of stdout")
    _add_config_options(col)
    col.set_defaults(handler=cmd_collapse)

    exp = sub.add_parser("explain", help="why two text files match or not",
                         epilog=EXPLAIN_EXAMPLE, formatter_class=formatter)
    exp.add_argument("a")
    exp.add_argument("b")
    exp.add_argument("--json", action="store_true")
    _add_config_options(exp)
    exp.set_defaults(handler=cmd_explain)

    run = sub.add_parser("run", help="deduplicate corpus files (JSON Lines, Parquet, text) into "
                         "a folder", epilog=RUN_EXAMPLE, formatter_class=formatter)
    run.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="files, folders or globs: .jsonl/.ndjson (plain, .gz, .zst), "
                          ".parquet, .txt (one document per file)")
    run.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                     help="folder for the kept records, duplicates.parquet and summary.json")
    run.add_argument("--level", dest="unit", choices=("document", "paragraph", "sentence"),
                     default="document",
                     help="remove duplicate documents, or repeated paragraphs (non-blank lines) "
                          "within and across documents (default: document)")
    run.add_argument("--mode", choices=("collapse", "flag"), default="collapse",
                     help="collapse: remove repeats; flag: keep everything and add a field "
                          "listing them (default: collapse)")
    run.add_argument("--text-field", default="text", help="field holding the text (text)")
    run.add_argument("--id-field", default=None,
                     help="field holding the id (default: FILE:LINE)")
    run.add_argument("--flag-field", default="dedup",
                     help="field added in flag mode (default: dedup)")
    run.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                     help="bad records stop the run, or go to rejects.jsonl (default: fail)")
    run.add_argument("--duplicates-jsonl", action="store_true",
                     help="also write duplicates.jsonl")
    run.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this process and its cores; ray: Ray tasks on a local Ray or "
                          "the cluster at --ray-address (pip install 'dedup[ray]'); the same "
                          "outputs (default: local)")
    run.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="with --engine ray: a running cluster (auto, HOST:6379, "
                          "ray://HOST:10001); default: start Ray on this machine's cores")
    run.add_argument("--ray-sketch", choices=("tasks", "data"), default=None,
                     help="with --engine ray: the sketch stage (read, normalize, shingle, "
                          "signatures) as Ray tasks or as Ray Data map_batches; the same "
                          "outputs (default: tasks, or DEDUP_RAY_SKETCH_ON)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the results already in OUTDIR")
    run.add_argument("--workers", type=int, default=None,
                     help="threads for the kernels (default: all cores)")
    run.add_argument("--batch-mb", type=float, default=None,
                     help="megabytes of text per batch (default: 4); results do not depend on it")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    run.add_argument("--index", metavar="PATH", default=None,
                     help="a dedup index of earlier runs (created if absent): units repeating "
                          "its units are removed with dup_of naming their key, and the kept "
                          "records are stored in it (key: the record id) once the run is done")
    run.add_argument("--index-read-only", action="store_true",
                     help="with --index: dedup against the index without storing anything")
    _add_config_options(run)
    for action in run._actions:  # --unit stays a hidden alias of --level
        if "--unit" in action.option_strings:
            action.help = argparse.SUPPRESS
            action.default = "document"
    run.set_defaults(handler=cmd_run)

    pln = sub.add_parser("plan", help="estimate units, memory, disk and time of a dedup run "
                         "before running it", epilog=PLAN_EXAMPLE, formatter_class=formatter)
    pln.add_argument("inputs", nargs="+", metavar="INPUT", help="as for dedup run")
    pln.add_argument("-o", "--output", default=None, metavar="OUTDIR",
                     help="where the run would write (to check its free space)")
    pln.add_argument("--level", dest="unit", choices=("document", "paragraph", "sentence"),
                     default="document", help="as for dedup run (default: document)")
    pln.add_argument("--mode", choices=("collapse", "flag"), default="collapse")
    pln.add_argument("--text-field", default="text", help="field holding the text (text)")
    pln.add_argument("--id-field", default=None, help="field holding the id")
    pln.add_argument("--json", action="store_true", help="the estimate as one JSON object")
    _add_config_options(pln)
    for action in pln._actions:
        if "--unit" in action.option_strings:
            action.help = argparse.SUPPRESS
            action.default = "document"
    pln.set_defaults(handler=cmd_plan)

    idx = sub.add_parser("index", help="add text files to a persistent index, or check them "
                         "against it", epilog=INDEX_EXAMPLE, formatter_class=formatter)
    actions = idx.add_subparsers(dest="action", required=True)
    for action, text in (("add", "check each file against the index, then store it"),
                         ("check", "check each file against the index; store nothing"),
                         ("stats", "counts, settings and file size of the index")):
        act = actions.add_parser(action, help=text, epilog=INDEX_EXAMPLE,
                                 formatter_class=formatter)
        act.add_argument("path", metavar="INDEX", help="the index file (created by add)")
        act.add_argument("--json", action="store_true", help="JSON output, one object per file")
        act.set_defaults(handler=cmd_index)
        if action == "stats":
            act.add_argument("--verify", action="store_true",
                             help="also check the file's integrity (reads every unit)")
            continue
        act.add_argument("files", nargs="+", metavar="FILE", help="text files or folders")
        if action == "add":
            act.add_argument("--replace", action="store_true",
                             help="a stored file whose text changed is replaced (default: error)")
        # settings fixed when the index is created; an existing index keeps its own
        act.add_argument("--shingle", choices=SHINGLES, default=None,
                         help="character or word n-grams (new index: char)")
        act.add_argument("--ngram", type=int, default=None, help="n-gram size (new index: 5)")
        act.add_argument("--threshold", type=float, default=None,
                         help="Jaccard similarity of near-duplicates (new index: 0.8)")
        act.add_argument("--num-perm", type=int, default=None,
                         help="MinHash permutations (new index: 128)")
        act.add_argument("--seed", type=int, default=None, help="MinHash seed (new index: 1)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")
    try:
        return args.handler(args, sys.stdout)
    except DedupError as err:
        if args.debug:
            raise
        print(f"dedup: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except (KeyboardInterrupt, SystemError) as err:
        # run_files has removed its partial folder on the way out. A Ctrl-C that lands while
        # numba loads a cached kernel reaches us as a SystemError caused by the interrupt.
        if args.debug or not _is_interrupt(err):
            raise
        print("dedup: interrupted", file=sys.stderr)
        return 130


def entry():
    """The `dedup` command (and `python -m dedup`): exit with main()'s status.

    After an interrupt, whose cleanup main() has done, the process ends at once with 130.
    Letting the interpreter shut down normally ended some interrupted runs with death by
    SIGINT (status -2) after the message was printed: 1 to 4 of 8 runs interrupted in the
    first half second of `dedup run`, before and after the kernels released the GIL; the
    cause lies in the shutdown, past our code."""
    code = main()
    if code == 130:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)
    sys.exit(code)


def _is_interrupt(err: BaseException) -> bool:
    """Whether err is a KeyboardInterrupt or was raised because of one."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())

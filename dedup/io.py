"""Corpus files in and out: JSON Lines (plain, .gz, .zst), Parquet, plain text files.

Readers stream records `(id, text, original bytes or row)` shard by shard and can be run again
(the batch pipeline reads its input more than once instead of holding the text). Every bad record
either raises an InputError naming the file, the line and the field, or, when the caller passes
`on_reject`, is handed to it and skipped. Writers mirror an input shard: same format and
compression; a kept JSON Lines record that was not changed is written back byte for byte.
"""

import glob
import gzip
import io
import json
import os
import re
import zlib
from dataclasses import dataclass
from json.decoder import JSONDecoder, scanstring
from pathlib import Path

import orjson

from dedup.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
COMPRESSIONS = {".gz": "gz", ".zst": "zst", ".zstd": "zst"}
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_SUFFIXES = (".txt",)
PARQUET_BATCH_ROWS = 4096
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark some exporters put before the first line


@dataclass(frozen=True)
class Shard:
    """One input file. name: its path relative to the inputs' common folder (the output keeps
    it); format: "jsonl", "parquet" or "text"; compression: None, "gz" or "zst" (JSON Lines)."""

    path: Path
    name: str
    format: str
    compression: str | None
    size: int
    mtime_ns: int


@dataclass(slots=True)
class Record:
    """One input record. line: 1-based line (JSON Lines), row (Parquet) or 1 (text file);
    raw: the original line with its line break (JSON Lines), the file's bytes (text), or
    (record batch, row) for Parquet; shard: index into the list of shards."""

    id: str
    text: str
    shard: int
    line: int
    raw: object


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that could not be read: where, why, and its raw line (bytes) when there is one."""

    file: str
    line: int
    error: str
    raw: bytes

    @property
    def is_whole_file(self) -> bool:
        """Line 0: the whole file was rejected (empty, unreadable), no record was read from it."""
        return self.line == 0

    def to_json(self) -> bytes:
        try:
            raw, is_utf8 = self.raw.decode("utf-8"), True
        except UnicodeDecodeError:
            raw, is_utf8 = self.raw.decode("utf-8", "backslashreplace"), False
        data = {"file": self.file, "line": self.line, "error": self.error,
                "raw": raw.rstrip("\r\n")}
        if not is_utf8:
            data["raw_is_utf8"] = False
        return json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n"


def shard_format(path: Path) -> tuple[str, str | None] | None:
    """(format, compression) from a file name, or None when it is not a corpus file."""
    name = path.name.lower()
    compression = None
    for suffix, kind in COMPRESSIONS.items():
        if name.endswith(suffix):
            compression = kind
            name = name[: -len(suffix)]
            break
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl", compression
    if compression is None and name.endswith(PARQUET_SUFFIXES):
        return "parquet", None
    if compression is None and name.endswith(TEXT_SUFFIXES):
        return "text", None
    return None


def discover(inputs: list[str]) -> list[Shard]:
    """The shards named by files, folders (searched recursively, sorted) and globs, in the order
    given, each once. Raises InputError for a name that matches nothing readable."""
    paths = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and shard_format(p)
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise InputError(f"{path}: folder holds no .jsonl, .jsonl.gz, .jsonl.zst, "
                                 f".parquet or .txt files")
            paths.extend(found)
        elif path.is_file():
            if shard_format(path) is None:
                raise InputError(f"{path}: unknown format (expected .jsonl, .ndjson, .json, "
                                 f"optionally .gz or .zst, .parquet or .txt)")
            paths.append(path)
        elif glob.has_magic(name):
            found = sorted(Path(p) for p in glob.glob(name, recursive=True)
                           if Path(p).is_file() and shard_format(Path(p)))
            if not found:
                raise InputError(f"{name}: pattern matches no corpus files")
            paths.extend(found)
        elif path.exists():  # a FIFO, socket or device: its bytes cannot be read three times
            raise InputError(f"{path}: not a regular file or folder")
        else:
            raise InputError(f"{path}: no such file or folder")
    unique = []
    seen = set()
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    # outputs are named as the inputs were given (a symbolic link by its own name, not its
    # target's), relative to the folder that holds them all
    absolute = [Path(os.path.abspath(p)) for p in unique]
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    shards = []
    names = set()
    for path, full in zip(unique, absolute):
        name = full.relative_to(root).as_posix()
        if name in names:  # cannot happen with distinct absolute paths; guard anyway
            raise InputError(f"{path}: two inputs would be written to the same output {name}")
        names.add(name)
        fmt, compression = shard_format(path)
        stat = path.stat()
        shards.append(Shard(path, name, fmt, compression, stat.st_size, stat.st_mtime_ns))
    return shards


def _check_unchanged(shard: Shard):
    stat = shard.path.stat()
    if (stat.st_size, stat.st_mtime_ns) != (shard.size, shard.mtime_ns):
        raise InputError(f"{shard.name}: file changed while the run was reading it")


def _open_span(shard: Shard, start: int, end: int):
    """The lines of bytes [start, end) of a plain file (read at once: a span is bounded)."""
    with open(shard.path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    stream = io.BytesIO(data)
    return stream, stream


def _open_lines(shard: Shard):
    handle = open(shard.path, "rb")
    if shard.compression == "gz":
        return gzip.GzipFile(fileobj=handle, mode="rb"), handle
    if shard.compression == "zst":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        return io.BufferedReader(reader, buffer_size=1 << 20), handle
    return handle, handle


_DECOMPRESS_ERRORS = (EOFError, OSError, zlib.error)


def _zstd_error():
    try:
        import zstandard

        return (zstandard.ZstdError,)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        return ()


def _zstd_truncation(path: Path) -> str | None:
    """Why a .zst file does not end on the end of a frame, or None: zstandard's stream reader
    reads a file cut inside a frame as a shorter stream, without an error. Reads only the frame
    and block headers (RFC 8878), seeking over the blocks."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        pos = 0
        while pos < size:
            handle.seek(pos)
            head = handle.read(18)  # magic, descriptor and the largest frame header
            magic = int.from_bytes(head[:4], "little") if len(head) >= 4 else None
            if magic is not None and magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
                pos += 8 + int.from_bytes(head[4:8], "little")
                if len(head) < 8 or pos > size:
                    return f"file ends inside a frame at byte {size}"
                continue
            if magic != 0xFD2FB528:
                return f"no zstd frame at byte {pos}"
            if len(head) < 5:
                return f"file ends inside a frame at byte {size}"
            descriptor = head[4]
            is_single = descriptor >> 5 & 1
            fcs = (1 if is_single else 0, 2, 4, 8)[descriptor >> 6]
            pos += 5 + (0 if is_single else 1) + (0, 1, 2, 4)[descriptor & 3] + fcs
            while True:
                handle.seek(pos)
                block = handle.read(3)
                if len(block) < 3:
                    return f"file ends inside a frame at byte {size}"
                header = int.from_bytes(block, "little")
                pos += 3 + (1 if (header >> 1) & 3 == 1 else header >> 3)
                if header & 1:
                    break
            pos += 4 if descriptor >> 2 & 1 else 0
            if pos > size:
                return f"file ends inside a frame at byte {size}"
    return None


class Reader:
    """Streams the records of shards; run `records()` as many times as needed.

    text_field, id_field: the fields (JSON keys, Parquet columns) holding the text and the id;
    ids default to "name:line". on_reject: None to raise InputError on the first bad record, or
    a callable taking a Reject (the record is then skipped); it sees each reject once, during
    the first full pass.
    """



    def __init__(self, shards, text_field="text", id_field=None, on_reject=None, span=None):
        self.shards = shards
        self.text_field = text_field
        self.id_field = id_field
        self.on_reject = on_reject
        # (start byte, end byte, number of the line at start): read only that part of a plain
        # JSON Lines shard (one shard; start just after a line break), with the line numbers,
        # ids and errors a whole read gives there. Lets the Ray engine split a large file.
        self.span = span
        self._checked = False
        self._rejected_lines = set()  # (shard index, line) of the rejects of the first pass
        self._next = 0  # index of the next good record, over all shards
        self._wanted = None

    def records(self, wanted=None):
        """Every good record of every shard, in order.

        wanted: after a first full pass, a bool array over the good records: JSON Lines records
        not wanted are not parsed (id and text None; line and raw set), which is all that a
        later pass needs of the records it leaves untouched.
        """
        self._next = 0
        self._wanted = wanted if self._checked else None
        for index, shard in enumerate(self.shards):
            if self._checked:
                _check_unchanged(shard)
            if shard.format == "jsonl":
                yield from self._jsonl(index, shard)
            elif shard.format == "parquet":
                yield from self._parquet(index, shard)
            else:
                yield from self._text(index, shard)
        self._checked = True

    def _reject(self, shard, line, error, raw=b""):
        if not self._checked:
            self._rejected_lines.add((self.shards.index(shard), line))
        reject = Reject(shard.name, line, error, raw)
        if self.on_reject is None:
            where = f"{shard.name} line {line}" if line else shard.name
            raise InputError(f"{where}: {error}")
        if not self._checked:  # later passes meet the same rejects again: report them once
            self.on_reject(reject)

    def _field_hint(self, field, option):
        return f' (choose another with {option})' if option else ""

    def _jsonl(self, index, shard):
        text_field, id_field = self.text_field, self.id_field
        try:
            stream, handle = _open_lines(shard) if self.span is None else \
                _open_span(shard, *self.span[:2])
        except OSError as err:
            raise InputError(f"{shard.name}: cannot read ({err.strerror})") from None
        line_no = 0 if self.span is None else self.span[2] - 1
        loads = orjson.loads
        errors = _DECOMPRESS_ERRORS + _zstd_error()
        wanted = self._wanted
        rejected = self._rejected_lines
        with handle:
            try:
                for raw in stream:
                    line_no += 1
                    body = raw if line_no > 1 or not raw.startswith(BOM) else raw[3:]
                    if wanted is not None and self._next < wanted.size \
                            and not wanted[self._next]:
                        if not body or body.isspace() or (
                                rejected and (index, line_no) in rejected):
                            continue
                        self._next += 1
                        yield Record(None, None, index, line_no, raw)
                        continue
                    try:
                        obj = loads(body)
                    except orjson.JSONDecodeError as err:
                        if not body.strip():
                            continue  # a blank line holds no record
                        obj, problem = _slow_json(body, err)
                        if problem:
                            self._reject(shard, line_no, problem, raw)
                            continue
                    if type(obj) is not dict:
                        self._reject(shard, line_no,
                                     f"not a JSON object (got {_json_type(obj)})", raw)
                        continue
                    text = obj.get(text_field)
                    if type(text) is not str:
                        if text_field not in obj:
                            problem = (f'field "{text_field}" is missing'
                                       f"{self._field_hint(text_field, '--text-field')}")
                        else:
                            problem = (f'field "{text_field}" is not a string '
                                       f"(got {_json_type(text)})")
                        self._reject(shard, line_no, problem, raw)
                        continue
                    if id_field is None:
                        record_id = f"{shard.name}:{line_no}"
                    else:
                        record_id = obj.get(id_field)
                        if type(record_id) is not str:
                            if id_field not in obj:
                                self._reject(shard, line_no, f'field "{id_field}" is missing '
                                             "(choose another with --id-field)", raw)
                                continue
                            if isinstance(record_id, bool) or not isinstance(record_id, int):
                                self._reject(shard, line_no, f'field "{id_field}" is not a '
                                             f"string or integer (got {_json_type(record_id)})",
                                             raw)
                                continue
                            record_id = str(record_id)
                    self._next += 1
                    yield Record(record_id, text, index, line_no, raw)
            except errors as err:
                kind = {"gz": "gzip", "zst": "zstd"}.get(shard.compression, "")
                self._reject(shard, line_no + 1,
                             f"{kind} stream is truncated or corrupt ({err})".strip())
                return
        if shard.compression == "zst":
            problem = _zstd_truncation(shard.path)
            if problem:  # the zstd reader ends a cut frame quietly: its records would be lost
                self._reject(shard, line_no + 1, f"zstd stream is truncated ({problem})")
                return
        if line_no == 0:
            self._reject(shard, 0, "file is empty")

    def _parquet(self, index, shard):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(shard.path)
        except (OSError, pa.ArrowException) as err:
            self._reject(shard, 0, f"not a readable Parquet file ({err})")
            return
        schema = handle.schema_arrow
        problem = None
        if self.text_field not in schema.names:
            problem = (f'column "{self.text_field}" is missing (choose another with '
                       f"--text-field; columns: {', '.join(schema.names)})")
        elif self.id_field is not None and self.id_field not in schema.names:
            problem = f'column "{self.id_field}" is missing (choose another with --id-field)'
        else:
            text_type = schema.field(self.text_field).type
            if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
                problem = f'column "{self.text_field}" is not a string column (got {text_type})'
        if problem:
            handle.close()
            self._reject(shard, 0, problem)
            return
        row = 0
        with handle:
            if handle.metadata.num_rows == 0:
                self._reject(shard, 0, "file is empty")
                return
            for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                texts = batch.column(self.text_field).to_pylist()
                ids = None if self.id_field is None else batch.column(self.id_field).to_pylist()
                for k, text in enumerate(texts):
                    row += 1
                    if text is None:
                        self._reject(shard, row, f'field "{self.text_field}" is null',
                                     _row_json(batch, k))
                        continue
                    if ids is None:
                        record_id = f"{shard.name}:{row}"
                    else:
                        record_id = ids[k]
                        if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
                            self._reject(shard, row, f'field "{self.id_field}" is not a string '
                                         f"or integer (got {type(record_id).__name__})",
                                         _row_json(batch, k))
                            continue
                        record_id = str(record_id)
                    self._next += 1
                    yield Record(record_id, text, index, row, (batch, k))

    def _text(self, index, shard):
        try:
            data = shard.path.read_bytes()
        except OSError as err:
            raise InputError(f"{shard.name}: cannot read ({err.strerror})") from None
        if not data:
            self._reject(shard, 0, "file is empty")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            self._reject(shard, line, f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                         f"{err.start})", data)
            return
        self._next += 1
        yield Record(shard.name, text, index, 1, data)


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _slow_json(raw: bytes, err):
    """(object, None) when the standard library reads what orjson refused (lone surrogate
    escapes), else (None, the reason the line is bad)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return None, f"not UTF-8 (byte 0x{raw[bad.start]:02x} at column {bad.start + 1})"
    try:
        return json.loads(line), None
    except ValueError:
        return None, f"not valid JSON ({err})"


def _row_json(batch, row) -> bytes:
    values = {name: batch.column(name)[row].as_py() for name in batch.schema.names}
    return json.dumps(values, ensure_ascii=False, default=str).encode("utf-8", "backslashreplace")


# --- editing one JSON Lines record without touching its other bytes --------------------------

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = JSONDecoder()


def _value_spans(line: str) -> tuple[dict, int]:
    """{key: (start, end)} of each top-level value of a JSON object (the last one of a repeated
    key, as JSON readers take it) and the index of the closing brace."""
    pos = _WS.match(line, 0).end()
    if line[pos:pos + 1] != "{":
        raise ValueError("not a JSON object")
    pos = _WS.match(line, pos + 1).end()
    spans = {}
    if line[pos:pos + 1] == "}":
        return spans, pos
    while True:
        key, pos = scanstring(line, pos + 1)
        pos = _WS.match(line, pos).end()
        pos = _WS.match(line, pos + 1).end()  # past the colon
        _, end = _DECODER.raw_decode(line, pos)
        spans[key] = (pos, end)
        pos = _WS.match(line, end).end()
        if line[pos] == ",":
            pos = _WS.match(line, pos + 1).end()
            continue
        return spans, pos


def json_string(text: str) -> str:
    """JSON for a string, non-ASCII kept as is (escaped only for lone surrogates)."""
    dumped = json.dumps(text, ensure_ascii=False)
    try:
        dumped.encode("utf-8")
    except UnicodeEncodeError:
        dumped = json.dumps(text)
    return dumped


def edit_jsonl(raw: bytes, text_field: str, new_text: str | None, add_field: str | None = None,
               add_value=None) -> bytes:
    """The record `raw` with its text field's value replaced by new_text (when not None) and
    the field add_field appended (or replaced) with add_value; every other byte kept."""
    line = raw.decode("utf-8")
    bom = "\ufeff" if line.startswith("\ufeff") else ""
    line = line[len(bom):]
    spans, close = _value_spans(line)
    edits = []
    if new_text is not None:
        start, end = spans[text_field]
        edits.append((start, end, json_string(new_text)))
    if add_field is not None:
        value = json.dumps(add_value, ensure_ascii=False)
        if add_field in spans:
            start, end = spans[add_field]
            edits.append((start, end, value))
        else:
            sep = ", " if spans else ""
            edits.append((close, close, f"{sep}{json.dumps(add_field)}: {value}"))
    for start, end, value in sorted(edits, reverse=True):
        line = line[:start] + value + line[end:]
    return (bom + line).encode("utf-8")


# --- writers ---------------------------------------------------------------------------------


class JsonlWriter:
    """Writes the kept records of one JSON Lines shard to `path`, compressed like the input;
    gzip headers carry no name or time so that equal runs give equal bytes."""

    def __init__(self, path: Path, shard: Shard):
        self._file = open(path, "wb")
        if shard.compression == "gz":
            self._stream = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0)
        elif shard.compression == "zst":
            import zstandard

            self._stream = zstandard.ZstdCompressor(level=3).stream_writer(self._file,
                                                                          closefd=False)
        else:
            self._stream = self._file
        self._pending = []
        self._pending_size = 0

    def write(self, data: bytes):
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= 1 << 20:
            self._flush()

    def _flush(self):
        self._stream.write(b"".join(self._pending))
        self._pending = []
        self._pending_size = 0

    def close(self):
        self._flush()
        if self._stream is not self._file:
            self._stream.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


class ParquetWriter:
    """Writes the kept rows of one Parquet shard, with the input's schema and compression.

    write(batch, row, new_text, flags): new_text None keeps the row's text; flags (a list of
    dicts) only when flag_field is set, which adds that column."""

    def __init__(self, path: Path, shard: Shard, text_field: str, flag_field=None,
                 flag_type=None):
        import pyarrow.parquet as pq

        source = pq.ParquetFile(shard.path)
        schema = source.schema_arrow
        meta = source.metadata
        compression = "snappy"
        if meta.num_row_groups and meta.num_columns:
            compression = meta.row_group(0).column(0).compression.lower()
            if compression == "uncompressed":
                compression = "none"
        source.close()
        self._text_field = text_field
        self._flag_field = flag_field
        if flag_field is not None:
            if flag_field in schema.names:
                schema = schema.remove(schema.get_field_index(flag_field))
            schema = schema.append(_pa().field(flag_field, flag_type))
        self._schema = schema
        self._flag_type = flag_type
        self._writer = parquet_writer(path, schema, compression=compression)
        self._batch = None
        self._rows = []
        self._texts = {}
        self._flags = []

    def write(self, batch, row, new_text=None, flags=None):
        if batch is not self._batch:
            self._flush()
            self._batch = batch
        if new_text is not None:
            self._texts[len(self._rows)] = new_text
        self._rows.append(row)
        if self._flag_field is not None:
            self._flags.append(flags or [])

    def _flush(self):
        pa = _pa()
        if self._batch is None or not self._rows:
            self._batch, self._rows, self._texts, self._flags = None, [], {}, []
            return
        table = pa.Table.from_batches([self._batch]).take(pa.array(self._rows, pa.int64()))
        if self._texts:
            index = table.schema.get_field_index(self._text_field)
            texts = table.column(index).to_pylist()
            for k, text in self._texts.items():
                texts[k] = text
            table = table.set_column(index, table.schema.field(index),
                                     pa.array(texts, table.schema.field(index).type))
        if self._flag_field is not None:
            if self._flag_field in table.schema.names:
                table = table.drop_columns([self._flag_field])
            table = table.append_column(self._schema.field(self._flag_field),
                                        pa.array(self._flags, self._flag_type))
        self._writer.write_table(table.cast(self._schema))
        self._batch, self._rows, self._texts, self._flags = None, [], {}, []

    def close(self):
        self._flush()
        self._writer.close()


class TextWriter:
    """Writes the one document of a text file (unchanged bytes, or its new text)."""

    def __init__(self, path: Path, shard: Shard):
        self._path = path
        self._data = None

    def write(self, data: bytes):
        self._data = data

    def close(self):
        if self._data is not None:
            with open(self._path, "wb") as handle:
                handle.write(self._data)
                handle.flush()
                os.fsync(handle.fileno())


def _pa():
    import pyarrow

    return pyarrow


def parquet_writer(path, schema, **options):
    """A pyarrow ParquetWriter whose clean-up after a failed run stays quiet: left open when a
    write failed (a full disk), pyarrow's __del__ retries the close and printed the error again
    as "Exception ignored ... Traceback" after the CLI's one-line message."""
    import pyarrow.parquet as pq

    class QuietParquetWriter(pq.ParquetWriter):
        def __del__(self):
            try:
                super().__del__()
            except Exception:  # the run failed already and its folder is removed
                pass

    return QuietParquetWriter(path, schema, **options)

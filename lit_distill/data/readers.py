"""Raw readers: one local file -> its rows as ``(location, dict)`` pairs, every error naming the place.

We read json/jsonl/csv ourselves instead of through ``datasets.load_dataset`` because its json and csv
builders infer a schema from a prefix of the file: an optional field that first appears (or changes type)
after ~10 MB is rejected with no row named, CSV ``NA`` becomes a missing value and an integer column with a
gap becomes ``2.0``. Here every value keeps the type the file gives it (CSV cells stay strings) and the
location is the 1-based line of the row's first character (parquet: the 1-based row).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

EXTENSIONS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class SourceError(ValueError):
    """A source cannot be loaded; the message names the source, file, 1-based line and field."""


def unit(file: str) -> str:
    """How a location in ``file`` is called in messages: a line of a text file, a row of anything else."""
    return "line" if Path(file).suffix in (".json", ".jsonl", ".csv") else "row"


def iter_rows(file: str, fmt: str) -> Iterator[tuple[int, dict]]:
    """Rows of one file with their 1-based location; raises SourceError naming the file and line."""
    reader = {"json": _iter_json, "csv": _iter_csv, "parquet": _iter_parquet}.get(fmt)
    if reader is None:
        raise SourceError(f"{file}: unknown format '{fmt}' (json, jsonl, parquet or csv)")
    empty = True
    for loc, row in reader(file):
        empty = False
        if not isinstance(row, dict):
            raise SourceError(f"{file}, {unit(file)} {loc}: expected a JSON object, got {type(row).__name__}")
        yield loc, row
    if empty:
        raise SourceError(f"{file}: the file is empty (no rows)")


def column_names(file: str, fmt: str) -> list[str]:
    """Every column of a file, in order of first appearance (a column may first appear in the last row)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(file).schema_arrow.names)
    seen: dict[str, None] = {}
    for _, row in iter_rows(file, fmt):
        seen.update(dict.fromkeys(row))
    return list(seen)


def _decode(raw: bytes, file: str, lineno: int) -> str:
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(f"{file}, line {lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _iter_json(file: str) -> Iterator[tuple[int, object]]:
    with open(file, "rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if head.startswith(b"["):
        yield from _iter_json_array(file)
        return
    with open(file, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = _decode(raw, file, lineno)
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{file}, line {lineno}: malformed JSON: {e.msg} (column {e.colno})") from None


def _iter_json_array(file: str) -> Iterator[tuple[int, object]]:
    """Elements of a top-level JSON array, each with the line where it starts."""
    with open(file, "rb") as fh:
        data = fh.read()
    text = _decode(data, file, 1) if data.isascii() else None
    if text is None:  # find the line of a UTF-8 error before decoding the whole file
        for lineno, raw in enumerate(data.splitlines(keepends=True), 1):
            _decode(raw, file, lineno)
        text = data.decode("utf-8-sig")
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, counted = 1, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise SourceError(f"{file}, line {e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
        yield line, obj


def _iter_csv(file: str) -> Iterator[tuple[int, dict]]:
    # Cells stay strings: "NA" is an answer, "2" is not 2.0. A quoted cell may span lines, so a row's
    # location is the line after the previous row's last line.
    with open(file, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            start = reader.line_num + 1
            for row in reader:
                if None in row:
                    raise SourceError(f"{file}, line {start}: more cells than the header has columns")
                yield start, {k: v for k, v in row.items() if v is not None}
                start = reader.line_num + 1
        except UnicodeDecodeError as e:
            raise SourceError(f"{file}, line {reader.line_num + 1}: not valid UTF-8 ({e.reason})") from None
        except csv.Error as e:
            raise SourceError(f"{file}, line {reader.line_num}: malformed CSV: {e}") from None


def _iter_parquet(file: str) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(file)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise SourceError(f"{file}: not a readable parquet file: {str(e).splitlines()[0]}") from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield n, row

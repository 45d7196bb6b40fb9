"""History files: the rows of :mod:`onlearn.history` as JSON Lines or Parquet.

JSON Lines keeps every value as JSON has it (a label ``true`` stays a boolean, ``1`` an
integer). Parquet (through pyarrow) types its columns from the model's config: ``features`` is
a struct with a field per feature (number: double, integer: int64, boolean: bool, string and
category: string, or the type of a category's declared values), ``label`` and
``previous_label`` take the type of the declared classes (double for regression). Columns with
no single type (``outputs``, whose answers map versions to labels and probabilities, and labels
of a model whose classes are not declared or mix types) hold JSON text, listed in the file's
metadata (``onlearn.json_columns``) so that reading gives the values back.

Both formats read back into the same rows, so importing either gives the same log.

Files are written to a temporary name beside the target and renamed at the end: an export that
fails or is interrupted leaves no half file behind.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from onlearn.config import ModelConfig, Task
from onlearn.errors import ConfigError, OnlearnError
from onlearn.history import ROW_FIELDS, BadHistoryRow
from onlearn.schema import FeatureType

FORMATS = ("jsonl", "parquet")
JSON_COLUMNS_KEY = b"onlearn.json_columns"
FORMAT_KEY = b"onlearn.format"
FORMAT_VERSION = b"history/1"
# Rows a Parquet row group holds, and a read batch: a bound on the memory of either.
CHUNK = 10_000

__all__ = ["FORMATS", "format_of", "read_rows", "write_rows"]


def format_of(path: str | None, given: str | None) -> str:
    """The format asked for, else the one the file name says (``.parquet``, ``.pq``), else
    JSON Lines."""
    if given is not None:
        if given not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {given!r}")
        return given
    if path and Path(path).suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    return "jsonl"


def write_rows(
    rows: Iterable[Mapping[str, Any]], out: str | None, fmt: str, config: ModelConfig
) -> None:
    """Write ``rows`` to the file ``out`` (None: standard output, JSON Lines only)."""
    if out is None:
        if fmt == "parquet":
            raise ConfigError("Parquet is written to a file: give --out FILE.parquet")
        _write_jsonl(rows, sys.stdout)
        sys.stdout.flush()
        return
    target = Path(out)
    if target.is_dir():
        raise ConfigError(f"--out {out} is a directory: give a file name in it")
    partial = target.with_name(f".{target.name}.partial")
    try:
        if fmt == "parquet":
            _write_parquet(rows, partial, config)
        else:
            with partial.open("w", encoding="utf-8") as stream:
                _write_jsonl(rows, stream)
        os.replace(partial, target)
    except OSError as e:  # no such directory, no permission, disk full
        raise ConfigError(f"--out {out}: cannot write it ({e.strerror or e})") from None
    finally:
        partial.unlink(missing_ok=True)


def read_rows(path: str, fmt: str) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for each row of the file: ``where`` names the line (JSON Lines) or row
    (Parquet), 1-based. A line that is not JSON comes as a :class:`BadHistoryRow` in place of
    its row, for the import to stop at or skip."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file")
    if fmt == "parquet":
        yield from _read_parquet(path)
    else:
        yield from _read_jsonl(path)


# JSON Lines


def _write_jsonl(rows: Iterable[Mapping[str, Any]], stream: IO[str]) -> None:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    for row in rows:
        stream.write(dumps(row))
        stream.write("\n")


def _read_jsonl(path: str) -> Iterator[tuple[str, Any]]:
    # Bytes, decoded line by line: a line that is no UTF-8 is that line's error, not a crash.
    with open(path, "rb") as stream:
        for n, raw in enumerate(stream, 1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):  # as spreadsheets save UTF-8
                raw = raw[len(codecs.BOM_UTF8) :]
            if not raw.strip():
                continue
            where = f"{path} line {n}"
            try:
                yield where, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield (
                    where,
                    BadHistoryRow(where, "row", f"not UTF-8 text ({e.reason} at byte {e.start})"),
                )
            except ValueError as e:
                yield where, BadHistoryRow(where, "row", f"not valid JSON: {e}")
            except RecursionError:
                yield where, BadHistoryRow(where, "row", "not valid JSON: nested too deeply")


# Parquet


def _arrow_schema(config: ModelConfig):
    """The Parquet schema of ``config``'s rows and the columns held as JSON text."""
    import pyarrow as pa

    json_columns = ["outputs"]
    if config.task is Task.REGRESSION:
        label = pa.float64()
    else:
        label = _type_of_values(config.classes)
        if label is None:
            label = pa.string()
            json_columns += ["label", "previous_label"]
    features = []
    plain = {
        FeatureType.NUMBER: pa.float64(),
        FeatureType.INTEGER: pa.int64(),
        FeatureType.BOOLEAN: pa.bool_(),
        FeatureType.STRING: pa.string(),
    }
    for name in config.schema.names:
        feature = config.schema[name]
        kind = plain.get(feature.type)
        if kind is None:  # a category: the type of its declared values, else text
            kind = _type_of_values(feature.values) or pa.string()
        features.append(pa.field(name, kind))
    types = {
        "event_id": pa.string(),
        "seq": pa.int64(),
        "at": pa.float64(),
        "kind": pa.string(),
        "label": label,
        "features": pa.struct(features),
        "source": pa.string(),
        "labeller": pa.string(),
        "prediction_id": pa.string(),
        "predicted_at": pa.float64(),
        "answered_by": pa.string(),
        "outputs": pa.string(),
        "sampled": pa.string(),
        "sample_p": pa.float64(),
        "pace": pa.float64(),
        "corrects": pa.string(),
        "retracts": pa.string(),
        "previous_label": label,
        "previous_source": pa.string(),
        "previous_labeller": pa.string(),
    }
    metadata = {JSON_COLUMNS_KEY: json.dumps(json_columns).encode(), FORMAT_KEY: FORMAT_VERSION}
    schema = pa.schema([pa.field(name, types[name]) for name in ROW_FIELDS], metadata=metadata)
    return schema, json_columns


def _type_of_values(values):
    """The Arrow type of values that all have one JSON type (bool, int, str), else None."""
    import pyarrow as pa

    if not values:
        return None
    kinds = {type(v) for v in values}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds == {str}:
        return pa.string()
    return None


def _write_parquet(rows: Iterable[Mapping[str, Any]], path: Path, config: ModelConfig) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, json_columns = _arrow_schema(config)

    def table(chunk: list[dict]) -> pa.Table:
        for row in chunk:
            for name in json_columns:
                if row[name] is not None:
                    row[name] = json.dumps(row[name], separators=(",", ":"))
        try:
            return pa.Table.from_pylist(chunk, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise OnlearnError(
                f"these rows do not fit the Parquet columns typed from model "
                f"{config.name!r}'s config ({e}); export them as JSON Lines (--format jsonl)"
            ) from None

    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[dict] = []
        for row in rows:
            chunk.append(dict(row))
            if len(chunk) >= CHUNK:
                writer.write_table(table(chunk))
                chunk = []
        if chunk:
            writer.write_table(table(chunk))


def _read_parquet(path: str) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ConfigError(f"{path}: not a Parquet file ({e})") from None
    metadata = parquet.schema_arrow.metadata or {}
    try:
        json_columns = [str(c) for c in json.loads(metadata.get(JSON_COLUMNS_KEY, b"[]"))]
    except (ValueError, TypeError, RecursionError):
        raise ConfigError(
            f"{path}: its metadata {JSON_COLUMNS_KEY.decode()} is not a JSON list of columns"
        ) from None
    n = 0
    with parquet:
        for batch in parquet.iter_batches(batch_size=CHUNK):
            for row in batch.to_pylist():
                n += 1
                where = f"{path} row {n}"
                try:
                    for name in json_columns:
                        if row.get(name) is not None:
                            row[name] = json.loads(row[name])
                except (ValueError, TypeError) as e:
                    yield where, BadHistoryRow(where, name, f"not valid JSON text: {e}")
                    continue
                except RecursionError:
                    yield (
                        where,
                        BadHistoryRow(where, name, "not valid JSON text: nested too deeply"),
                    )
                    continue
                yield where, row

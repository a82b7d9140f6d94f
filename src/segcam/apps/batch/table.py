"""The table of a batch run: a row per explanation in ``DIR/explanations.parquet``, written as
it goes so that a killed run loses only the rows not yet committed.

:class:`TableWriter` appends rows; :meth:`~TableWriter.commit` appends the rows since the last
commit to the journal ``DIR/explanations.parts/journal.jsonl`` (one JSON object per line, one
write), and every ``flush_every`` rows become the next part file
``DIR/explanations.parts/part-000001.parquet`` …, written under a temporary name in the same
folder and renamed, so a part appears whole or not at all (a temporary file left by a kill is
ignored, and removed by the next writer), after which the journal is emptied.  A journal line
cut short by a kill is ignored; the next writer turns the journal's rows into a part.
:func:`done_keys` reads the ``key`` column of the parts, the journal and an earlier run's
table: what a resumed run skips.  :meth:`TableWriter.close`
merges them all into ``explanations.parquet`` (and ``explanations.csv`` on request), sorted by
item ``index`` then ``key``, with the columns of every row (missing values are nulls, ints
and floats merge as floats), then removes the parts.  Writes are not fsynced (a killed process
loses nothing flushed; a power cut may), and one process writes a folder at a time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import SegcamError
from .store import flag, output_folder, shown

TABLE = "explanations.parquet"
CSV = "explanations.csv"
PARTS = "explanations.parts"
JOURNAL = "journal.jsonl"
KEY, INDEX = "key", "index"  # the columns every row has
ERROR = "/error"  # the key's end of an item's error row: dropped once a later run explains the item
_PART = re.compile(r"part-(\d{6,})\.parquet")
_KINDS = (bool, int, float, str)  # bool first: a bool is an int too
_INT64 = 2**63


class TableWriter:
    """A row per explanation: :meth:`append` rows, :meth:`close` to write ``explanations.parquet``.

    Rows are flat dicts of str, int, float, bool or ``None`` with at least ``key`` (str) and
    ``index`` (the item's, int ≥ 0); a column may be missing or ``None`` in some rows, and ints
    and floats mix (as floats).  Every ``flush_every`` rows go to a new part file; a killed run
    loses only the rows not yet committed (:meth:`commit`), and a new writer on the same folder
    goes on after them.
    """

    def __init__(self, path: str | Path, *, flush_every: int = 256, csv: bool = False) -> None:
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise SegcamError(f"flush_every must be a positive integer (rows per part file), got {flush_every!r}.")
        self.folder = output_folder(path)
        self.flush_every = flush_every
        self.csv = flag(csv, "csv")
        self.parts = self.folder / PARTS
        self.parts.mkdir(parents=True, exist_ok=True)
        for stale in self.parts.glob(".part-*.tmp"):  # left by a killed writer: never part of the table
            stale.unlink()
        self._next = 1 + max((int(_PART.fullmatch(p.name)[1]) for p in _part_files(self.parts)), default=0)
        self._uncommitted = 0
        self._closed = False
        self._rows: list[dict[str, Any]] = journal_rows(self.folder)  # a killed writer's committed rows: a part now
        self._kinds = _kinds_on_disk(self.folder, self._rows)
        self.flush()
        (self.parts / JOURNAL).unlink(missing_ok=True)  # also when it held only a line cut short

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row (checked whole before it is kept); flush when ``flush_every`` are waiting."""
        if self._closed:
            raise SegcamError("this TableWriter is closed; open a new one on the folder to add rows.")
        self._kinds = _row_kinds(row, self._kinds)
        self._rows.append(dict(row))
        self._uncommitted += 1
        if len(self._rows) >= self.flush_every:
            self.flush()

    def commit(self) -> None:
        """Make the rows appended since the last commit survive a kill: one append to the journal."""
        if self._uncommitted:
            lines = "".join(json.dumps(r) + "\n" for r in self._rows[-self._uncommitted:])
            with open(self.parts / JOURNAL, "a", encoding="utf-8") as journal:
                journal.write(lines)
            self._uncommitted = 0

    def flush(self) -> None:
        """Write the waiting rows as the next part file (atomically)."""
        if not self._rows:
            return
        pa, pq = _pyarrow()
        columns = dict.fromkeys(name for row in self._rows for name in row)
        table = pa.table({c: pa.array([r.get(c) for r in self._rows], type=getattr(pa, _ARROW[self._kinds[c]])())
                          for c in columns})
        _replace(self.parts / f"part-{self._next:06d}.parquet", lambda tmp: pq.write_table(table, str(tmp)))
        (self.parts / JOURNAL).unlink(missing_ok=True)  # its rows are in the part now
        self._next += 1
        self._rows, self._uncommitted = [], 0

    def close(self) -> Path:
        """Flush, merge the parts (and an earlier run's table) into ``explanations.parquet`` — sorted
        by ``index`` then ``key``, the last row of a key kept — and remove the parts."""
        self.flush()
        self._closed = True
        _, pq = _pyarrow()
        table = _merged_table(_sources(self.folder))
        _replace(self.folder / TABLE, lambda tmp: pq.write_table(table, str(tmp)))
        if self.csv:
            from pyarrow import csv  # pyarrow is there: _pyarrow() found it

            _replace(self.folder / CSV, lambda tmp: csv.write_csv(table, str(tmp)))
        for part in _part_files(self.parts):
            part.unlink()
        if not any(self.parts.iterdir()):
            self.parts.rmdir()
        return self.folder / TABLE

    def __enter__(self) -> TableWriter:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Close on success; on an error keep what was appended (flushed) for a resumed run."""
        if kind is None:
            self.close()
        else:
            self.flush()


def done_keys(path: str | Path) -> set[str]:
    """The keys of the rows in ``path``'s table, part files and journal: what a resumed run skips."""
    folder = output_folder(path, create=False)
    if not folder.is_dir():
        return set()
    _, pq = _pyarrow()
    return ({k for p in _sources(folder) for k in pq.read_table(p, columns=[KEY])[KEY].to_pylist()}
            | {r[KEY] for r in journal_rows(folder)})


def journal_rows(folder: Path) -> list[dict[str, Any]]:
    """The committed rows of ``folder``'s journal (a last line cut short by a kill is left out)."""
    journal = folder / PARTS / JOURNAL
    if not journal.is_file():
        return []
    rows = []
    for line in journal.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row = json.loads(line) if line.endswith("\n") else None
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and isinstance(row.get(KEY), str):
            rows.append(row)
    return rows


def _merged_table(sources: list[Path]) -> Any:
    """The rows of the Parquet files ``sources`` as one table: the columns of all (nulls where a
    file lacks one, ints beside floats as floats), the last row of each key — and no error row
    (key ending in ``/error``) of an item with a newer row that is not one — sorted by index then key."""
    pa, pq = _pyarrow()
    tables = [pq.read_table(p) for p in sources]
    if not tables:
        return pa.table({KEY: pa.array([], pa.string()), INDEX: pa.array([], pa.int64())})
    table = pa.concat_tables(tables, promote_options="permissive")
    keys, indices = table[KEY].to_pylist(), table[INDEX].to_pylist()
    last = {k: i for i, k in enumerate(keys)}
    newest = {}  # index → position of its newest row that is not an error
    for i, (key, index) in enumerate(zip(keys, indices)):
        if not key.endswith(ERROR):
            newest[index] = i
    kept = [i for i in last.values() if not (keys[i].endswith(ERROR) and newest.get(indices[i], -1) > i)]
    return table.take(pa.array(sorted(kept), pa.int64())).sort_by([(INDEX, "ascending"), (KEY, "ascending")])


def _sources(folder: Path) -> list[Path]:
    """The finished table (an earlier run's) then the part files, in the order they were written."""
    final = folder / TABLE
    return ([final] if final.is_file() else []) + _part_files(folder / PARTS)


def _part_files(parts: Path) -> list[Path]:
    if not parts.is_dir():
        return []
    return sorted((p for p in parts.iterdir() if _PART.fullmatch(p.name)), key=lambda p: int(_PART.fullmatch(p.name)[1]))


def _replace(path: Path, write: Callable[[Path], Any]) -> None:
    """``write`` to a temporary file beside ``path``, then rename it over ``path`` (atomic)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_ARROW = {None: "null", "bool": "bool_", "int": "int64", "float": "float64", "str": "string"}  # kind → pyarrow type


def _row_kinds(row: Any, kinds: dict[str, str | None]) -> dict[str, str | None]:
    """``kinds`` (column → bool/int/float/str, None while only nulls were seen) updated with
    ``row``, or a SegcamError naming the bad value."""
    if not isinstance(row, Mapping):
        raise SegcamError(f"a row must be a dict of column → value, got {shown(row)}.")
    if not isinstance(row.get(KEY), str) or not row[KEY]:
        raise SegcamError(f"every row needs a {KEY!r} (a non-empty str naming the explanation), got "
                          f"{shown(row.get(KEY))}.")
    index = row.get(INDEX)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise SegcamError(f"every row needs an {INDEX!r} (the item's index, an int ≥ 0), got {shown(index)}.")
    out = dict(kinds)
    for name, value in row.items():
        if not isinstance(name, str) or not name:
            raise SegcamError(f"column names must be non-empty strings, got {shown(name)}.")
        out[name] = _merged_kind(name, out.get(name), _kind(name, value))
    return out


def _merged_kind(name: str, seen: str | None, kind: str | None) -> str | None:
    """One column's kind after a value of ``kind``: nulls fit any kind, ints and floats make floats."""
    if kind is None or seen in (None, kind):
        return seen or kind
    if {seen, kind} == {"int", "float"}:
        return "float"
    raise SegcamError(f"column {name!r} holds {seen} values and now a {kind}; keep one type per column "
                      "(None where a value is missing).")


def _kind(name: str, value: Any) -> str | None:
    if value is None:
        return None
    for kind in _KINDS:
        if isinstance(value, kind):
            if kind is int and not -_INT64 <= value < _INT64:
                raise SegcamError(f"row[{name!r}] = {value} is beyond int64; store it as a float or a str.")
            return kind.__name__
    raise SegcamError(f"row[{name!r}] must be a str, int, float, bool or None, got {shown(value)}; convert "
                      "tensors and numpy numbers with .item() and lists with json.dumps.")


def _kinds_on_disk(folder: Path, rows: list[dict[str, Any]]) -> dict[str, str | None]:
    """The column kinds of the table and parts already written and of journal ``rows`` (a
    resumed run keeps them)."""
    pa, pq = _pyarrow()
    t = pa.types
    kinds: dict[str, str | None] = {}
    for source in _sources(folder):
        for field in pq.read_schema(source):
            kind = next((k for k, is_kind in (("bool", t.is_boolean), ("int", t.is_integer),
                                              ("float", t.is_floating), ("str", t.is_string))
                         if is_kind(field.type)), None)
            kinds[field.name] = _merged_kind(field.name, kinds.get(field.name), kind)
    for row in rows:
        kinds = _row_kinds(row, kinds)
    return kinds


def _pyarrow() -> tuple[ModuleType, ModuleType]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SegcamError("the batch table needs pyarrow; install it with pip install 'segcam[batch]'.") from None
    return pa, pq

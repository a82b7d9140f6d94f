"""The batch table: part files that appear whole, resume after a kill, one sorted table with every column."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segcam.apps.batch.table import CSV, JOURNAL, PARTS, TABLE, TableWriter, done_keys
from segcam.errors import SegcamError


def rows(n: int, start: int = 0) -> list[dict]:
    return [{"key": f"k{i:05d}", "index": i, "score": i / 2} for i in range(start, start + n)]


def test_flushed_parts_survive_a_writer_dropped_without_close(tmp_path):
    writer = TableWriter(tmp_path, flush_every=3)
    for row in rows(7):
        writer.append(row)
    del writer  # as if killed: the 7th row was never flushed
    parts = sorted(p.name for p in (tmp_path / PARTS).iterdir())
    assert parts == ["part-000001.parquet", "part-000002.parquet"]
    assert done_keys(tmp_path) == {f"k{i:05d}" for i in range(6)}
    assert not (tmp_path / TABLE).exists()


def test_a_resumed_writer_goes_on_after_the_parts_and_merges_them(tmp_path):
    first = TableWriter(tmp_path, flush_every=3)
    for row in rows(7):
        first.append(row)
    second = TableWriter(tmp_path, flush_every=3)
    done = done_keys(tmp_path)
    for row in rows(10):
        if row["key"] not in done:
            second.append(row)
    assert (tmp_path / PARTS / "part-000003.parquet").is_file()
    assert second.close() == tmp_path / TABLE
    assert pq.read_table(tmp_path / TABLE).to_pylist() == rows(10)
    assert not (tmp_path / PARTS).exists() and done_keys(tmp_path) == {r["key"] for r in rows(10)}


def test_a_temporary_file_left_by_a_kill_is_ignored_then_removed(tmp_path):
    killed = TableWriter(tmp_path, flush_every=1)
    killed.append(rows(1)[0])
    (tmp_path / PARTS / ".part-000002.parquet.tmp").write_bytes(b"PAR1 cut short")  # killed while writing
    del killed
    assert done_keys(tmp_path) == {"k00000"}
    resumed = TableWriter(tmp_path)
    assert sorted(p.name for p in (tmp_path / PARTS).iterdir()) == ["part-000001.parquet"]
    resumed.append(rows(1, start=1)[0])
    resumed.close()
    assert pq.read_table(tmp_path / TABLE).to_pylist() == rows(2)


def test_the_table_is_sorted_by_index_then_key(tmp_path):
    with TableWriter(tmp_path, flush_every=2) as writer:
        for key, index in [("b", 2), ("z", 0), ("a", 2), ("a", 0), ("c", 1)]:
            writer.append({"key": f"{index:06d}/{key}", "index": index})
    got = pq.read_table(tmp_path / TABLE).column("key").to_pylist()
    assert got == ["000000/a", "000000/z", "000001/c", "000002/a", "000002/b"]


def test_columns_that_change_between_rows_and_parts_are_unified(tmp_path):
    with TableWriter(tmp_path, flush_every=2) as writer:
        writer.append({"key": "a", "index": 0, "score": 1, "note": None})
        writer.append({"key": "b", "index": 1, "score": 2.5})
        writer.append({"key": "c", "index": 2, "score": None, "dice": 0.75, "empty": True, "note": "dark"})
        writer.append({"key": "d", "index": 3, "score": 4})
    table = pq.read_table(tmp_path / TABLE)
    assert table.schema == pa.schema([("key", pa.string()), ("index", pa.int64()), ("score", pa.float64()),
                                      ("note", pa.string()), ("dice", pa.float64()), ("empty", pa.bool_())])
    assert table.to_pylist() == [
        {"key": "a", "index": 0, "score": 1.0, "note": None, "dice": None, "empty": None},
        {"key": "b", "index": 1, "score": 2.5, "note": None, "dice": None, "empty": None},
        {"key": "c", "index": 2, "score": None, "note": "dark", "dice": 0.75, "empty": True},
        {"key": "d", "index": 3, "score": 4.0, "note": None, "dice": None, "empty": None},
    ]


def test_nan_is_kept_as_a_value(tmp_path):
    with TableWriter(tmp_path) as writer:
        writer.append({"key": "a", "index": 0, "lift": float("nan")})
    assert np.isnan(pq.read_table(tmp_path / TABLE).column("lift")[0].as_py())


def test_a_rerun_key_keeps_its_last_row(tmp_path):
    with TableWriter(tmp_path) as writer:
        writer.append({"key": "a", "index": 0, "score": 1.0})
        writer.append({"key": "b", "index": 1, "score": 2.0})
    with TableWriter(tmp_path) as writer:
        writer.append({"key": "a", "index": 0, "score": 3.0})
    assert pq.read_table(tmp_path / TABLE).to_pylist() == [{"key": "a", "index": 0, "score": 3.0},
                                                          {"key": "b", "index": 1, "score": 2.0}]


def test_csv_on_request_with_empty_cells_for_nulls(tmp_path):
    with TableWriter(tmp_path, csv=True) as writer:
        writer.append({"key": "b", "index": 1, "score": 0.5, "ok": True})
        writer.append({"key": "a", "index": 0, "score": None, "ok": False})
    with (tmp_path / CSV).open(newline="") as f:
        got = list(csv.DictReader(f))
    assert got == [{"key": "a", "index": "0", "score": "", "ok": "false"},
                   {"key": "b", "index": "1", "score": "0.5", "ok": "true"}]
    assert not (tmp_path / "no-csv" / CSV).exists()


def test_an_empty_run_writes_an_empty_table(tmp_path):
    assert done_keys(tmp_path / "never-written") == set()
    TableWriter(tmp_path).close()
    table = pq.read_table(tmp_path / TABLE)
    assert table.num_rows == 0 and table.column_names == ["key", "index"]


def test_an_error_inside_the_with_block_keeps_the_rows_for_a_resumed_run(tmp_path):
    with pytest.raises(KeyboardInterrupt), TableWriter(tmp_path) as writer:
        writer.append(rows(1)[0])
        raise KeyboardInterrupt
    assert done_keys(tmp_path) == {"k00000"} and not (tmp_path / TABLE).exists()


def test_a_table_killed_mid_run_keeps_whole_parts_and_resumes(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from segcam.apps.batch.table import TableWriter
        writer = TableWriter({str(tmp_path)!r}, flush_every=100)
        for i in range(10_000):
            writer.append({{"key": f"k{{i:05d}}", "index": i, "score": i / 2}})
            time.sleep(0.0002)
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while len(list((tmp_path / PARTS).glob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    done = done_keys(tmp_path)
    assert len(done) >= 300 and len(done) % 100 == 0 and done == {f"k{i:05d}" for i in range(len(done))}
    for part in (tmp_path / PARTS).glob("part-*.parquet"):
        assert pq.read_table(part).num_rows == 100
    with TableWriter(tmp_path, flush_every=1000) as writer:
        for row in rows(10_000):
            if row["key"] not in done:
                writer.append(row)
    assert pq.read_table(tmp_path / TABLE).to_pylist() == rows(10_000)


def test_committed_rows_survive_a_kill_before_any_part(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from segcam.apps.batch.table import TableWriter
        writer = TableWriter({str(tmp_path)!r})  # flush_every=256: no part for these rows
        for i in range(5):
            writer.append({{"key": f"k{{i:05d}}", "index": i, "score": i / 2, "ok": True, "note": None}})
            if i < 3:
                writer.commit()
        print("ready", flush=True)
        sys.stdin.readline()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not list((tmp_path / PARTS).glob("part-*")) and (tmp_path / PARTS / JOURNAL).is_file()
    assert done_keys(tmp_path) == {"k00000", "k00001", "k00002"}  # committed: kept; the last two: lost
    with TableWriter(tmp_path) as writer:  # the journal becomes a part, with its types, and the run goes on
        assert [p.name for p in (tmp_path / PARTS).iterdir()] == ["part-000001.parquet"]
        writer.append({"key": "k00003", "index": 3, "score": 1, "ok": False, "note": "x"})
    table = pq.read_table(tmp_path / TABLE)
    assert table.to_pylist() == [{"key": f"k{i:05d}", "index": i, "score": 1.0 if i == 3 else i / 2, "ok": i < 3,
                                  "note": "x" if i == 3 else None} for i in range(4)]
    assert table.schema.field("score").type == pa.float64() and table.schema.field("ok").type == pa.bool_()


def test_a_journal_line_cut_short_is_left_out(tmp_path):
    writer = TableWriter(tmp_path)
    for row in rows(2):
        writer.append(row)
    writer.commit()
    with (tmp_path / PARTS / JOURNAL).open("a") as journal:
        journal.write('{"key": "k00002", "index": 2, "sco')  # a kill in the middle of a write
    assert done_keys(tmp_path) == {"k00000", "k00001"}
    TableWriter(tmp_path).close()
    assert pq.read_table(tmp_path / TABLE).to_pylist() == rows(2)


def test_a_journal_of_only_a_cut_line_does_not_swallow_the_next_commit(tmp_path):
    (tmp_path / PARTS).mkdir()
    (tmp_path / PARTS / JOURNAL).write_text('{"key": "k00000", "ind')  # a kill in the first commit
    writer = TableWriter(tmp_path)
    writer.append(rows(1)[0])
    writer.commit()
    assert done_keys(tmp_path) == {"k00000"}


def test_an_items_error_row_goes_once_a_later_run_explains_it(tmp_path):
    with TableWriter(tmp_path) as first:
        first.append({"key": "000001/error", "index": 1, "error": "cannot read"})
        first.append({"key": "000002/error", "index": 2, "error": "cannot read"})
        first.append({"key": "000003/c1/m/l", "index": 3, "score": 1.0})
    with TableWriter(tmp_path) as second:  # item 1 now explained; item 3 fails this time
        second.append({"key": "000001/c1/m/l", "index": 1, "score": 0.5})
        second.append({"key": "000003/error", "index": 3, "error": "gone"})
    keys = [r["key"] for r in pq.read_table(tmp_path / TABLE).to_pylist()]
    assert keys == ["000001/c1/m/l", "000002/error", "000003/c1/m/l", "000003/error"]


def test_a_flush_empties_the_journal_and_a_commit_writes_each_row_once(tmp_path):
    writer = TableWriter(tmp_path, flush_every=3)
    writer.append(rows(1)[0])
    writer.commit()
    writer.commit()  # nothing new: nothing written
    assert (tmp_path / PARTS / JOURNAL).read_text().count("\n") == 1
    for row in rows(2, start=1):
        writer.append(row)  # the third row: a part, which holds the journal's row too
    assert not (tmp_path / PARTS / JOURNAL).exists() and done_keys(tmp_path) == {"k00000", "k00001", "k00002"}
    writer.close()
    assert pq.read_table(tmp_path / TABLE).to_pylist() == rows(3)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"flush_every": 0}, "flush_every must be a positive integer"),
    ({"flush_every": True}, "flush_every must be a positive integer"),
    ({"flush_every": 2.5}, "flush_every must be a positive integer"),
    ({"csv": "yes"}, "csv must be True or False"),
])
def test_bad_settings_name_the_fix(tmp_path, kwargs, match):
    with pytest.raises(SegcamError, match=match):
        TableWriter(tmp_path, **kwargs)


@pytest.mark.parametrize(("row", "match"), [
    ([("key", "a")], "a row must be a dict"),
    ({"index": 0}, "every row needs a 'key'"),
    ({"key": "", "index": 0}, "every row needs a 'key'"),
    ({"key": "a"}, "every row needs an 'index'"),
    ({"key": "a", "index": -1}, "every row needs an 'index'"),
    ({"key": "a", "index": True}, "every row needs an 'index'"),
    ({"key": "a", "index": 0, "dice": np.float32(0.5)}, r"row\['dice'\] must be a str, int, float, bool or None"),
    ({"key": "a", "index": 0, "shape": [4, 4]}, "lists with json.dumps"),
    ({"key": "a", "index": 0, "big": 2**63}, "beyond int64"),
    ({"key": "a", "index": 0, 3: 1}, "column names must be non-empty strings"),
    ({"key": "a", "index": 0, "score": "high"}, "column 'score' holds float values and now a str"),
    ({"key": "a", "index": 0, "empty": 1}, "column 'empty' holds bool values and now a int"),
])
def test_bad_rows_name_the_fix_and_are_not_kept(tmp_path, row, match):
    writer = TableWriter(tmp_path, flush_every=1)
    writer.append({"key": "first", "index": 0, "score": 1.5, "empty": False})
    with pytest.raises(SegcamError, match=match):
        writer.append(row)
    writer.close()
    assert pq.read_table(tmp_path / TABLE).column("key").to_pylist() == ["first"]


def test_a_resumed_writer_knows_the_column_types_on_disk(tmp_path):
    TableWriter(tmp_path, flush_every=1).append({"key": "a", "index": 0, "method": "rise"})
    with pytest.raises(SegcamError, match="column 'method' holds str values and now a int"):
        TableWriter(tmp_path).append({"key": "b", "index": 1, "method": 3})


def test_a_closed_writer_and_a_file_as_folder_are_refused(tmp_path):
    writer = TableWriter(tmp_path)
    writer.close()
    with pytest.raises(SegcamError, match="closed; open a new one"):
        writer.append(rows(1)[0])
    (tmp_path / "file").write_text("")
    with pytest.raises(SegcamError, match="is a file; give a folder"):
        TableWriter(tmp_path / "file")
    with pytest.raises(SegcamError, match="is a file; give a folder"):
        done_keys(tmp_path / "file")

"""The one JSONL reader, appender and atomic writer (:mod:`r1searcher.util.files`): damaged lines are
reported with ``file:line``, a torn last line is reported or cut off, appends are all or nothing,
and an atomic write that fails (a full disk, data that raises midway) leaves the old file whole."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from r1searcher.util.files import Damaged, append_bytes, append_jsonl, encode_jsonl, read_jsonl, write_atomic


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_reads_every_valid_row_with_its_line_number(tmp_path):
    p = _write(tmp_path / "a.jsonl", b'{"a": 1}\n\n{"a": 2}\n')
    got = read_jsonl(p)
    assert got.rows == [(1, {"a": 1}), (3, {"a": 2})]  # the blank line counts, as in an editor
    assert got.values() == [{"a": 1}, {"a": 2}] and not got.damaged and got.torn is None


def test_a_damaged_line_in_the_middle_is_reported_with_file_and_line(tmp_path):
    p = _write(tmp_path / "a.jsonl", b'{"a": 1}\n{"a": \n[1, 2]\n{"q": "\xff"}\n{"a": 5}\n')
    got = read_jsonl(p)
    assert got.values() == [{"a": 1}, {"a": 5}]  # a damaged line is skipped, not the end of the file
    assert got.messages() == [
        f"{p}:2: invalid JSON (Expecting value at column 1)",
        f"{p}:3: expected a JSON object, got list",
        f"{p}:4: not UTF-8 text (invalid start byte at byte 7)",
    ]
    assert got.torn is None


def test_any_json_value_when_objects_are_not_required(tmp_path):
    p = _write(tmp_path / "a.jsonl", b'[1, 2]\n"x"\n3\n')
    assert read_jsonl(p, objects=False).values() == [[1, 2], "x", 3]


def test_on_bad_raise_names_the_first_damaged_line(tmp_path):
    p = _write(tmp_path / "a.jsonl", b'{"a": 1}\nnope\n{"a": \n')
    with pytest.raises(ValueError) as e:
        read_jsonl(p, on_bad="raise")
    assert str(e.value) == f"{p}:2: invalid JSON (Expecting value at column 1)"


def test_a_torn_last_line_is_reported_and_left_in_place(tmp_path):
    data = b'{"a": 1}\n{"a": 2, "b'
    p = _write(tmp_path / "a.jsonl", data)
    got = read_jsonl(p)
    assert got.values() == [{"a": 1}]
    assert got.torn == Damaged(p, 2, "invalid JSON (a torn write) (Unterminated string starting at at column 10)")
    assert got.messages() == [str(got.torn)]
    assert p.read_bytes() == data  # reporting never writes


def test_a_torn_last_line_is_cut_off_when_repaired(tmp_path, caplog):
    p = _write(tmp_path / "a.jsonl", b'{"a": 1}\n\n{"a": 2, "b')
    with caplog.at_level(logging.WARNING, logger="r1searcher.util.files"):
        got = read_jsonl(p, on_torn="repair")
    assert got.values() == [{"a": 1}] and not got.damaged  # repaired: not a damaged line any more
    assert got.torn is not None and got.torn.line == 3
    assert p.read_bytes() == b'{"a": 1}\n\n'  # the next append starts on a fresh line
    assert f"{p}: a torn last line" in caplog.text
    append_jsonl(p, [{"a": 3}])
    assert read_jsonl(p).values() == [{"a": 1}, {"a": 3}]


def test_a_torn_multibyte_character_is_a_torn_line(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"a": 1}\n{"q": "é'.encode()[:-1])
    got = read_jsonl(p, on_torn="repair")
    assert got.values() == [{"a": 1}] and got.torn is not None and "not UTF-8" in got.torn.reason
    assert p.read_bytes() == b'{"a": 1}\n'


def test_a_whole_last_line_without_newline_is_a_row_and_gets_its_newline_on_repair(tmp_path):
    p = _write(tmp_path / "a.jsonl", b'{"a": 1}\n{"a": 2}')
    assert read_jsonl(p).values() == [{"a": 1}, {"a": 2}]
    assert p.read_bytes() == b'{"a": 1}\n{"a": 2}'  # report mode leaves it as it is
    got = read_jsonl(p, on_torn="repair")
    assert got.values() == [{"a": 1}, {"a": 2}] and got.torn is None
    append_jsonl(p, [{"a": 3}])
    assert read_jsonl(p).values() == [{"a": 1}, {"a": 2}, {"a": 3}]  # not glued to the last line


def test_repair_and_raise_together_drop_only_the_torn_line(tmp_path):
    p = _write(tmp_path / "log.jsonl", b'{"step": 1}\n{"step": 2}\n{"st')
    assert read_jsonl(p, on_torn="repair", on_bad="raise").values() == [{"step": 1}, {"step": 2}]
    with pytest.raises(ValueError, match=r"log.jsonl:2: invalid JSON \(a torn write\)"):
        read_jsonl(_write(p, b'{"step": 1}\n{"st'), on_bad="raise")


def test_a_missing_file(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl", missing_ok=True).rows == []
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "none.jsonl")


def test_append_writes_one_line_per_row_and_a_lone_surrogate_as_ascii(tmp_path):
    p = tmp_path / "out.jsonl"
    append_jsonl(p, [{"q": "é"}, {"q": "\ud800"}])
    append_jsonl(p, [])
    assert p.read_bytes() == '{"q": "é"}\n{"q": "\\ud800"}\n'.encode()
    assert read_jsonl(p).values() == [{"q": "é"}, {"q": "\ud800"}]
    assert encode_jsonl([{"q": "é"}], ensure_ascii=True) == b'{"q": "\\u00e9"}\n'


def test_append_through_a_held_descriptor(tmp_path):
    p = tmp_path / "out.jsonl"
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        append_jsonl(p, [{"a": 1}], fd=fd)
        append_bytes(p, b'{"a": 2}\n', fd=fd, fsync=False)
    finally:
        os.close(fd)
    assert read_jsonl(p).values() == [{"a": 1}, {"a": 2}]


def test_append_into_a_missing_folder_names_the_file(tmp_path):
    p = tmp_path / "no" / "out.jsonl"
    with pytest.raises(OSError) as e:
        append_jsonl(p, [{"a": 1}])
    assert e.value.filename == str(p)


def test_write_atomic_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    p = tmp_path / "m.json"
    write_atomic(p, "old\n")
    write_atomic(p, b"new\n")
    assert p.read_text() == "new\n"
    write_atomic(p, (c for c in ["a", b"b", "é"]))
    assert p.read_text(encoding="utf-8") == "abé"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.json"]


def test_write_atomic_keeps_the_old_file_when_the_data_fails_midway(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("old\n")

    def chunks():
        yield "new, first half\n"
        raise RuntimeError("the encoder failed")

    with pytest.raises(RuntimeError, match="the encoder failed"):
        write_atomic(p, chunks())
    assert p.read_text() == "old\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.json"]


def test_write_atomic_into_a_missing_folder_names_the_target(tmp_path):
    p = tmp_path / "no" / "m.json"
    with pytest.raises(OSError) as e:
        write_atomic(p, "x")
    assert e.value.filename == str(p) and "No such file" in str(e.value)


def test_write_atomic_over_a_folder_names_the_target_and_keeps_it(tmp_path):
    p = tmp_path / "m.json"
    p.mkdir()
    (p / "keep").write_text("x")
    with pytest.raises(OSError) as e:
        write_atomic(p, "x")
    assert e.value.filename == str(p)
    assert (p / "keep").read_text() == "x" and sorted(x.name for x in tmp_path.iterdir()) == ["m.json"]


@pytest.fixture
def full_disk(tmp_path):
    """A real, full file system (a 128 KiB tmpfs; needs root): every write past it fails with ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        (d / "m.json").write_text("old\n")
        (d / "log.jsonl").write_text('{"a": 1}\n')
        with open(d / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_full_disk_keeps_the_old_file_and_names_it(full_disk):
    p = full_disk / "m.json"
    with pytest.raises(OSError) as e:
        write_atomic(p, "x" * 100_000)
    assert str(e.value) == f"[Errno 28] No space left on device: '{p}'"
    assert p.read_text() == "old\n"
    assert sorted(x.name for x in full_disk.iterdir()) == ["filler", "log.jsonl", "m.json"]


def test_a_full_disk_leaves_no_torn_appended_line(full_disk):
    p = full_disk / "log.jsonl"
    with pytest.raises(OSError) as e:
        append_jsonl(p, [{"a": "x" * 100_000}])
    assert e.value.filename == str(p) and e.value.strerror == "No space left on device"
    assert p.read_bytes() == b'{"a": 1}\n'


def test_iter_jsonl_streams_values_and_damaged_lines_in_line_order(tmp_path):
    from r1searcher.util.files import iter_jsonl

    p = _write(tmp_path / "a.jsonl", b'{"a": 1}\n\n[2]\nnope\n{"a": 5}')
    got = list(iter_jsonl(p, objects=False))
    assert got[:2] == [(1, {"a": 1}), (3, [2])]
    assert got[2] == (4, Damaged(p, 4, "invalid JSON (Expecting value at column 1)"))
    assert got[3] == (5, {"a": 5})
    assert [n for n, v in iter_jsonl(p) if isinstance(v, Damaged)] == [3, 4]


# The callers: each reader now names the file and line of a damaged line the same way.


def test_search_queries_file_names_the_damaged_line(tmp_path):
    from r1searcher.commands.search import read_queries

    p = _write(tmp_path / "q.jsonl", b'{"question": "a"}\n\n{"query": "b"}\n')
    assert read_queries(str(p)) == ["a", "b"]
    _write(p, b'{"question": "a"}\n{"question": "\xff"}\n')
    with pytest.raises(ValueError, match=rf"^{p}:2: not UTF-8 text"):
        read_queries(str(p))
    _write(p, b'{"question": "a"}\n{"question": "b')
    with pytest.raises(ValueError, match=rf"^{p}:2: invalid JSON \(a torn write\)"):
        read_queries(str(p))


def test_the_viewer_reader_keeps_line_numbers_and_lists_damaged_lines(tmp_path):
    from r1searcher.viewer.records import read_jsonl as viewer_read

    p = _write(tmp_path / "samples.jsonl", b'{"a": 1}\n[1]\n\n{"a": \n{"a": 5}\n{"a": 6')
    records, damaged = viewer_read(p)
    assert records == [(1, {"a": 1}), (5, {"a": 5})] and damaged == [2, 4, 6]


def test_qa_files_report_a_torn_last_line_and_keep_the_rest(tmp_path):
    from r1searcher.data.qa import LoadReport, load_qa

    p = _write(tmp_path / "qa.jsonl", b'{"question": "q1", "answer": "a"}\n{"question": "q2", "ans')
    report = LoadReport()
    assert [r.question for r in load_qa(p, report=report)] == ["q1"]
    assert report.n_bad == 1 and "(a torn write)" in str(report.errors[0]) and ":2:" in str(report.errors[0])


def test_eval_rows_report_damaged_and_incomplete_lines_in_line_order(tmp_path):
    from r1searcher.eval.evaluate import ROW_FIELDS, read_done

    row = {k: 0 for k in ROW_FIELDS}
    p = _write(tmp_path / "predictions.jsonl", b"\n".join([
        json.dumps(row).encode(), b'{"id": 1}', b"nope", json.dumps({**row, "id": 2}).encode(), b'{"id": 3, "qu',
    ]))
    damaged: list[str] = []
    assert [r["id"] for r in read_done(p, damaged)] == [0, 2]
    assert [d.split(": ", 1)[0] for d in damaged] == [f"{p}:2", f"{p}:3", f"{p}:5"]
    assert "not a prediction row" in damaged[0] and "(a torn write)" in damaged[2]



def test_a_resumed_runs_torn_log_line_is_cut_off_not_a_crash(tmp_path):
    """A run killed while appending a step's log line left it torn; resuming used to stop with a
    JSONDecodeError in truncate_log. Now the torn line is cut off and the earlier steps kept."""
    from r1searcher.rl.runfiles import read_log, truncate_log

    p = _write(tmp_path / "log.jsonl", b'{"step": 1, "r": "\\u00e9"}\n{"step": 2}\n{"step": 3}\n{"step": 4, "lo')
    truncate_log(p, 2)
    assert p.read_bytes() == b'{"step": 1, "r": "\\u00e9"}\n{"step": 2}\n'  # the kept lines, byte for byte
    assert read_log(p) == [{"step": 1, "r": "é"}, {"step": 2}]
    assert read_log(tmp_path / "none.jsonl") == []
    _write(p, b'{"step": 1}\nnope\n{"step": 2}\n')
    with pytest.raises(ValueError, match=rf"^{p}:2: invalid JSON"):
        truncate_log(p, 2)  # damage in the middle is not a kill's: reported, not guessed at

"""The wall clock of a resumable job (:mod:`r1searcher.util.wallclock`): earlier invocations count, the
file is rewritten atomically, and an unreadable record is one clear error."""

from __future__ import annotations

import json

import pytest

from r1searcher.util.wallclock import WallClock


def test_invocations_add_up_and_the_file_is_whole_after_each(tmp_path):
    path = tmp_path / "wall_clock.json"
    with WallClock(path, every=3600) as clock:
        assert clock.invocations == 1 and clock.before == 0.0
        assert json.loads(path.read_text())["invocations"] == 1  # written on entry
    first = json.loads(path.read_text())["seconds_total"]
    with WallClock(path, every=3600) as clock:
        assert clock.invocations == 2 and clock.before == first
    assert json.loads(path.read_text())["invocations"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wall_clock.json"]  # no temp file left


def test_the_error_that_ended_the_block_is_the_one_reported(tmp_path):
    import shutil

    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / "wall_clock.json"
    with pytest.raises(KeyError, match="the job's own error"):
        with WallClock(path, every=3600):
            shutil.rmtree(folder)  # the last save fails too; the job's error is the one to see
            raise KeyError("the job's own error")
    folder.mkdir()
    with pytest.raises(OSError) as e:
        with WallClock(path, every=3600):
            shutil.rmtree(folder)
    assert e.value.filename == str(path)  # names the file, not its temp file


@pytest.mark.parametrize("text", ["{", '{"seconds_total": "x", "invocations": 1}', '{"invocations": 1}'])
def test_an_unreadable_record_is_one_line_saying_what_to_do(tmp_path, text):
    path = tmp_path / "wall_clock.json"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        WallClock(path)
    assert str(e.value).startswith(f"{path}: unreadable wall-clock record") and "delete it" in str(e.value)

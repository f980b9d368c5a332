"""sim.fsutil / sim.cli.atomic_dir: an output directory never deletes what the command
did not write."""

import os

import pytest

from sim import cli
from sim.fsutil import (MARKER, OutputError, check_output_dir, check_output_file,
                        read_marker, replace_dir)

CMD = "python -m tool"


def _write(path, command=CMD, force=False, protect=(), content="new"):
    with cli.atomic_dir(path, command=command, force=force, protect=protect) as tmp:
        (tmp / "out.txt").write_text(content)


def test_missing_and_empty_targets_are_written_and_marked(tmp_path):
    _write(tmp_path / "a")
    assert (tmp_path / "a" / "out.txt").read_text() == "new"
    assert read_marker(tmp_path / "a") == CMD
    (tmp_path / "b").mkdir()
    _write(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [MARKER, "out.txt"]


def test_own_previous_output_is_replaced(tmp_path):
    _write(tmp_path / "a", content="one")
    (tmp_path / "a" / "stale.txt").write_text("left by the previous run")
    _write(tmp_path / "a", content="two")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [MARKER, "out.txt"]
    assert (tmp_path / "a" / "out.txt").read_text() == "two"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_output_has_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        _write(tmp_path / "a")
    finally:
        os.umask(mask)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("setup, needle", [
    ("file", "is a file"),
    ("foreign", "was not written by python -m tool"),
    ("other", "is the output of python -m other"),
    ("symlink", "is a symbolic link"),
])
def test_foreign_targets_are_refused_unless_forced(tmp_path, setup, needle):
    target = tmp_path / "t"
    if setup == "file":
        target.write_text("user data")
    elif setup == "symlink":
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "keep.txt").write_text("user data")
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.mkdir()
        (target / "keep.txt").write_text("user data")
        if setup == "other":
            _write(tmp_path / "o", command="python -m other")
            os.rename(tmp_path / "o" / MARKER, target / MARKER)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(OutputError, match=needle) as e:
        _write(target)
    assert "--force" in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before      # nothing touched
    _write(target, force=True)
    assert target.is_dir() and not target.is_symlink()
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "out.txt"]
    if setup == "symlink":                  # the link is replaced, not what it points to
        assert (tmp_path / "elsewhere" / "keep.txt").read_text() == "user data"


@pytest.mark.parametrize("where", [".", "..", "cwd", "/"])
def test_current_directory_and_its_parents_are_never_replaced(tmp_path, monkeypatch, where):
    work = tmp_path / "work"
    work.mkdir()
    _write(work / "x")                     # something of ours inside: still refused
    monkeypatch.chdir(work)
    target = {"cwd": str(work)}.get(where, where)
    for force in (False, True):
        with pytest.raises(OutputError, match="current directory"):
            check_output_dir(target, CMD, force=force)
    assert (work / "x" / "out.txt").exists()


def test_inputs_and_their_parents_are_never_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "model.json").write_text("{}")
    for target in (model, model.parent, model / "model.json"):
        for force in (False, True):
            with pytest.raises(OutputError, match="input"):
                check_output_dir(target, CMD, force=force, protect=[model])
    with pytest.raises(OutputError, match="input"):
        _write(model.parent, force=True, protect=[model])
    assert (model / "model.json").read_text() == "{}"
    _write(tmp_path / "models" / "other", protect=[model])      # a sibling is fine
    _write(model / "sub", protect=[model])                      # so is a new folder inside


def test_output_file_rules(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_output_file(tmp_path / "d")
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.npy").write_text("x")
    events = tmp_path / "ev.npz"
    events.write_text("x")
    for target in (model / "w.npy", events):
        with pytest.raises(OutputError, match="input"):
            check_output_file(target, protect=[model, events])
    check_output_file(model / "new.v", protect=[model, events])     # a new file is fine
    (tmp_path / "old.v").write_text("x")
    check_output_file(tmp_path / "old.v", protect=[model, events])  # so is an old output
    with pytest.raises(OutputError, match="input"):
        with cli.atomic_path(events, protect=[events]) as tmp:
            tmp.write_text("y")
    assert events.read_text() == "x"


def test_replace_dir_replaces_a_dangling_symlink(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    (tmp_path / "new").mkdir()
    replace_dir(tmp_path / "new", tmp_path / "link")
    assert (tmp_path / "link").is_dir() and not (tmp_path / "link").is_symlink()


def test_main_guard_reports_output_errors_in_one_line(tmp_path, capsys):
    (tmp_path / "t").write_text("x")

    def main(argv):
        _write(tmp_path / "t")
    assert cli.main_guard(main, [], prog="tool") == 2
    err = capsys.readouterr().err
    assert err.startswith("tool: error: --out: ") and err.count("\n") == 1
    assert (tmp_path / "t").read_text() == "x"

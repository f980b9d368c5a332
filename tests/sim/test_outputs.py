"""Every command that writes a directory (the board build of ``hw.build``, ``quant.export``,
``quant.importers``) never deletes what it did not write (issue 17, item 4).

One table over commands x cases: a regular file at ``--out``, a foreign folder holding a
user's file, the command's own previous output, ``--force``, ``--out .`` and a parent
of the input. The rule itself is :func:`sim.fsutil.check_output_dir` (tests/sim/
test_fsutil.py); this checks that each command uses it, before its long work.
"""

import os
import shutil

import numpy as np
import pytest

from sim.cli import main_guard
from sim.fsutil import MARKER, read_marker
from sim.model import load_model, save_model
from sim.randmodel import model_from_spec


def _tiny_model(path):
    rng = np.random.default_rng(4)
    save_model(model_from_spec([("conv2d", 2, 3, 1, 1), ("linear", 3)], rng,
                               input_shape=(1, 4, 4), timesteps=3), path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Inputs of every command, made once: model directory, checkpoint, NIR file."""
    root = tmp_path_factory.mktemp("inputs")
    made = {"model": _tiny_model(root / "models" / "m")}
    return root, made


def _checkpoint(root):
    pytest.importorskip("torch")
    from quant import train
    run = root / "runs" / "digits"
    if not (run / "checkpoint.pt").exists():
        assert train.main(["--dataset", "digits", "--out", str(run), "--epochs", "1",
                           "--max-steps", "1", "--limit", "24", "--no-progress"]) == 0
    return run / "checkpoint.pt"


def _nir_file(root):
    pytest.importorskip("nir")
    from quant.nir_export import export_nir
    path = root / "nets" / "m.nir"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        export_nir(_tiny_model(root / "nets" / "src"), path)
    return path


class Board:
    prog = "python -m hw.build"

    def input(self, root):
        return root / "models" / "m"

    def run(self, root, out, extra=()):
        from hw.build import main
        return main(["--board", "arty_a7", "--model", str(self.input(root)), "--out", str(out),
                     "--no-estimate", "--samples", "1", "--toolchain", "none", *extra])

    def check(self, out):
        assert (out / "report.json").is_file() and (out / "snn_core.v").is_file()


class Export:
    prog = "python -m quant.export"

    def input(self, root):
        return _checkpoint(root)

    def run(self, root, out, extra=()):
        from quant.export import cli
        return cli([str(self.input(root)), "--out", str(out), "--limit", "4", "--no-progress",
                    "--quiet", *extra])

    def check(self, out):
        load_model(out)
        assert (out / "report.json").is_file()


class Importers:
    prog = "python -m quant.importers"

    def input(self, root):
        return _nir_file(root)

    def run(self, root, out, extra=()):
        from quant.importers.__main__ import NetImportError, main
        return main_guard(main, ["nir", str(self.input(root)), "--out", str(out), *extra],
                          prog=self.prog, errors=(NetImportError,))

    def check(self, out):
        load_model(out)


COMMANDS = {"board": Board(), "export": Export(), "importers": Importers()}


def _tree(root):
    return sorted((str(p.relative_to(root)), p.is_dir() or p.read_bytes())
                  for p in root.rglob("*") if "runs" not in p.parts[len(root.parts):][:1])


def _refused(cmd, root, out, capsys, needle, extra=()):
    cmd.input(root)                                 # make the inputs before the snapshot
    capsys.readouterr()
    before = _tree(root)
    rc = cmd.run(root, out, extra)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert _tree(root) == before


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("case", ["file", "foreign", "own", "force", "dot", "input-parent"])
def test_output_directory_rules(inputs, name, case, capsys, monkeypatch):
    root, _ = inputs
    cmd = COMMANDS[name]
    monkeypatch.chdir(root)
    out = root / f"out-{name}-{case}"
    shutil.rmtree(out, ignore_errors=True)
    if case == "file":
        out.write_text("user data")
        _refused(cmd, root, out, capsys, "is a file")
        assert out.read_text() == "user data"
        out.unlink()
    elif case == "foreign":
        out.mkdir()
        (out / "thesis.tex").write_text("user data")
        _refused(cmd, root, out, capsys, "was not written by " + cmd.prog)
        assert (out / "thesis.tex").read_text() == "user data"
        shutil.rmtree(out)
    elif case == "own":
        assert cmd.run(root, out) == 0, capsys.readouterr().err
        assert read_marker(out) == cmd.prog
        (out / "stale.txt").write_text("from the previous run")
        assert cmd.run(root, out) == 0, capsys.readouterr().err
        assert not (out / "stale.txt").exists() and read_marker(out) == cmd.prog
        cmd.check(out)
        assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
        shutil.rmtree(out)
    elif case == "force":
        out.mkdir()
        (out / "old.txt").write_text("user data")
        assert cmd.run(root, out, ["--force"]) == 0, capsys.readouterr().err
        assert not (out / "old.txt").exists() and (out / MARKER).is_file()
        cmd.check(out)
        shutil.rmtree(out)
    elif case == "dot":
        for extra in ((), ("--force",)):
            _refused(cmd, root, ".", capsys, "current directory", extra)
    else:
        src = cmd.input(root)                       # the model directory or input file
        for extra in ((), ("--force",)):
            for target in (src, src.parent):
                _refused(cmd, root, target, capsys, "is or holds the input", extra)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""The command line of ``bench/hw_resources.py``: bad sweep points and worker options are
one-line errors with exit status 2 and nothing written (the syntheses themselves run in
``python bench/hw_resources.py``; the Ray path of ``--sweep`` shares
:mod:`bench.distributed` with ``bench.e2e``, tested in test_distributed.py)."""

import sys

import pytest

from bench.hw_resources import main
from sim.cli import main_guard


@pytest.mark.parametrize("args, words", [
    (["--sweep", "3,x"], ["--sweep", "'3,x'"]),
    (["--sweep", "3,2", "6"], ["--sweep", "'6'"]),
    (["--sweep", "3,2", "0,2"], ["--sweep", "'0,2'"]),
    (["--digits-lanes", "3,2,1"], ["--digits-lanes", "'3,2,1'"]),
    (["--workers", "2"], ["--workers", "--sweep"]),
    (["--sweep", "3,2", "--workers", "0"], ["--workers", "at least 1"]),
])
def test_bad_input(tmp_path, capsys, args, words):
    out = tmp_path / "hw.json"
    rc = main_guard(main, [*args, "--out", str(out)], prog="python bench/hw_resources.py")
    err = capsys.readouterr().err
    assert rc == 2
    assert all(w in err for w in words), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_sweep_workers_need_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    out = tmp_path / "hw.json"
    rc = main_guard(main, ["--sweep", "3,2", "6,2", "--workers", "2", "--out", str(out)],
                    prog="python bench/hw_resources.py")
    err = capsys.readouterr().err
    assert rc == 2
    assert "--workers 2" in err and "pip install -e .[scale]" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()

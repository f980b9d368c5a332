"""Train -> checkpoint -> (QAT) -> export -> model directory, with tiny budgets; CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quant import export as qexport
from quant import qat as qqat
from quant import train as qtrain
from sim.model import load_model
from sim.reference import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    rc = qtrain.main(["--dataset", "digits", "--out", str(out), "--epochs", "2",
                      "--max-steps", "6", "--limit", "96", "--no-progress"])
    assert rc == 0
    return out


def test_train_writes_a_checkpoint(digits_run):
    doc = qtrain.load_checkpoint(digits_run / "checkpoint.pt")
    assert doc["command"].startswith("python -m quant.train --dataset digits")
    hist = json.loads((digits_run / "history.json").read_text())
    assert hist == doc["history"] and hist[-1]["steps"] == 6
    for h in hist:
        assert 0 <= h["test_acc_float"] <= 1 and 0 <= h["test_acc_fixed"] <= 1
    net = doc["floatnet"]
    assert net.input_shape == (1, 8, 8) and [l.type for l in net.layers] == \
        ["conv2d", "sumpool2d", "linear"]
    # training changed the weights (same seed, same initial net)
    init = qtrain.build_net("digits", (1, 8, 8), 10, timesteps=net.timesteps)
    assert not np.allclose(init.layers[0].weight.detach().numpy(), net.layers[0].weight)


def test_export_writes_model_and_report(digits_run, tmp_path, capsys):
    out = tmp_path / "models" / "digits"
    rc = qexport.cli([str(digits_run / "checkpoint.pt"), "--out", str(out),
                                   "--limit", "40", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fixed-point accuracy" in printed and "| conv1 |" in printed
    model = load_model(out)
    assert [l.weight_bits for l in model.layers] == [8, None, 8]
    assert all(l.state_bits == 16 for l in model.layers)
    for i, l in enumerate(model.layers):
        assert l.acc_bits == l.required_acc_bits(model.count_clip_of(i))
    assert model.meta["command"].startswith("python -m quant.export")
    assert model.meta["checkpoint"]["train_command"].startswith("python -m quant.train")
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.md").read_text().startswith("# digits: export report")
    assert "python -m quant.train" in (out / "README.md").read_text()
    # the report's numbers agree with an independent run of the reference
    doc = qtrain.load_checkpoint(digits_run)
    data = qtrain.data_from_checkpoint(doc, "test", limit=40)
    preds = [run(model, data.binned(i), record=False, backend="numpy").prediction
             for i in range(len(data))]
    assert report["fixed_predictions"] == preds
    assert report["fixed_accuracy"] == np.mean(np.array(preds) == data.labels)
    assert report["torch_integer_agreement"] == 1.0
    agree = np.mean(np.array(report["float_predictions"]) == np.array(preds))
    assert report["agreement"] == agree
    assert len(report["layers"]) == 3 and report["overflow_count"] >= 0
    assert model.meta["accuracy"]["fixed_accuracy"] == report["fixed_accuracy"]


def test_qat_checkpoint_exports_with_its_widths(digits_run, tmp_path):
    q = tmp_path / "q4"
    rc = qqat.cli([str(digits_run), "--out", str(q), "--weight-bits", "4",
                                "--epochs", "1", "--max-steps", "2", "--limit", "64",
                                "--no-progress"])
    assert rc == 0
    doc = qtrain.load_checkpoint(q)
    assert doc["qat"]["weight_bits"] == 4 and doc["quant"]["weight_bits"] == 4
    out = tmp_path / "m4"
    assert qexport.cli([str(q), "--out", str(out), "--limit", "16", "--quiet",
                                     "--no-progress"]) == 0
    model = load_model(out)
    assert [l.weight_bits for l in model.layers] == [4, None, 4]
    assert max(int(np.abs(l.weights).max()) for l in model.layers if l.weights is not None) == 7


def test_gesture_tiny_budget(tmp_path):
    out = tmp_path / "g"
    rc = qtrain.main(["--dataset", "gesture_synth", "--out", str(out), "--epochs", "1",
                      "--max-steps", "1", "--limit", "8", "--timesteps", "3",
                      "--batch-size", "4", "--no-progress"])
    assert rc == 0
    doc = qtrain.load_checkpoint(out)
    sizes = [l.out_shape for l in doc["floatnet"].layers]
    assert sizes == [(4, 64, 64), (8, 32, 32), (8, 16, 16), (16, 8, 8), (8,)]
    assert sum(int(np.prod(s)) for s in sizes[:-1]) == 27648


def test_export_cli_bad_input(digits_run, tmp_path, capsys):
    ck = str(digits_run / "checkpoint.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases = [
        ([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o1")], "checkpoint not found"),
        ([str(garbage), "--out", str(tmp_path / "o2")], "not a readable checkpoint"),
        ([ck, "--out", str(tmp_path / "o3"), "--weight-bits", "1"], "--weight-bits: 1"),
        ([ck, "--out", str(tmp_path / "o4"), "--state-bits", "40"], "--state-bits: 40"),
        ([ck, "--out", str(tmp_path / "o5"), "--weight-bits", "x"], "invalid int value"),
        ([ck, "--out", str(tmp_path / "o6"), "--limit", "0"], "--limit: expected a positive"),
        ([ck], "--out"),
    ]
    for args, want in cases:
        with pytest.raises(SystemExit) as exc:
            sys.exit(qexport.cli(args))
        err = capsys.readouterr().err
        assert exc.value.code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (args, err)
    # the real command line: one line, exit 2, no traceback
    r = subprocess.run([sys.executable, "-m", "quant.export", str(garbage), "--out",
                        str(tmp_path / "o7")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("python -m quant.export: error: ") and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pt"]   # nothing written


def test_export_error_leaves_existing_model(digits_run, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    doc = qtrain.load_checkpoint(digits_run)
    doc["floatnet"].layers[2].beta = 2.0              # cannot be quantized
    from quant.ir import NetImportError
    with pytest.raises(NetImportError, match="layer fc1: beta 2.0"):
        qexport.export(doc, out, weight_bits=8, state_bits=16, per_channel=False, limit=4)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_train_cli_bad_input(tmp_path, capsys):
    cases = [
        (["--dataset", "mnist", "--out", str(tmp_path / "a")], "invalid choice: 'mnist'"),
        (["--dataset", "nmnist", "--out", str(tmp_path / "b")], "needs --root PATH"),
        (["--dataset", "nmnist", "--root", str(tmp_path / "none"), "--out",
          str(tmp_path / "c")], "data directory not found"),
        (["--dataset", "digits", "--out", str(tmp_path / "d"), "--timesteps", "0"],
         "--timesteps: expected a positive integer"),
    ]
    for args, want in cases:
        with pytest.raises(SystemExit) as exc:
            sys.exit(qtrain.cli(args))
        err = capsys.readouterr().err
        assert exc.value.code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (args, err)
    assert list(tmp_path.iterdir()) == []


def test_train_on_tonic_layout(tmp_path):
    """N-MNIST read from a copy on disk (tonic's layout), trained for two steps."""
    pytest.importorskip("tonic")
    from sim.events import EVENT_DTYPE
    from tests.quant.test_data import _write_nmnist_bin
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for label in range(10):
            d = tmp_path / "data" / "NMNIST" / split / str(label)
            d.mkdir(parents=True)
            ev = np.zeros(80, dtype=EVENT_DTYPE)
            ev["x"], ev["y"] = rng.integers(0, 34, 80), rng.integers(0, 34, 80)
            ev["p"], ev["t"] = rng.integers(0, 2, 80), np.sort(rng.integers(0, 200_000, 80))
            _write_nmnist_bin(d / "00001.bin", ev)
    out = tmp_path / "run"
    assert qtrain.cli(["--dataset", "nmnist", "--root", str(tmp_path / "data"), "--out",
                       str(out), "--epochs", "1", "--max-steps", "2", "--batch-size", "5",
                       "--timesteps", "4", "--no-progress"]) == 0
    doc = qtrain.load_checkpoint(out)
    assert doc["floatnet"].input_shape == (2, 34, 34)
    assert doc["dataset"]["root"] == str(tmp_path / "data")
    assert qexport.cli([str(out), "--out", str(tmp_path / "m"), "--quiet",
                        "--no-progress"]) == 0
    assert load_model(tmp_path / "m").n_classes == 10


def test_membrane_readout_end_to_end(tmp_path):
    out = tmp_path / "mem"
    assert qtrain.cli(["--dataset", "digits", "--out", str(out), "--readout", "membrane",
                       "--epochs", "1", "--max-steps", "4", "--limit", "64", "--per-channel",
                       "--no-progress"]) == 0
    assert qexport.cli([str(out), "--out", str(tmp_path / "m"), "--limit", "24", "--quiet",
                        "--no-progress", "--per-channel"]) == 0
    model = load_model(tmp_path / "m")
    assert model.readout == "membrane"
    assert len(set(model.layers[-1].threshold.tolist())) == 1    # one scale for the scores
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["torch_integer_agreement"] == 1.0


def test_qat_cli_bad_input(digits_run, tmp_path, capsys):
    cases = [
        ([str(tmp_path / "none.pt"), "--out", str(tmp_path / "a")], "checkpoint not found"),
        ([str(digits_run), "--out", str(tmp_path / "b"), "--weight-bits", "1"],
         "--weight-bits: 1 is outside"),
        ([str(digits_run), "--out", str(tmp_path / "c"), "--epochs", "0"], "--epochs"),
    ]
    for args, want in cases:
        with pytest.raises(SystemExit) as exc:
            sys.exit(qqat.cli(args))
        err = capsys.readouterr().err
        assert exc.value.code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (args, err)
    assert list(tmp_path.iterdir()) == []

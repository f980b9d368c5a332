"""``bench/sparse_sweep.py``: bad options are one-line errors with exit status 2 and nothing
written; one measurement of each sweep on a small model (the sweep counts of the energy
model equal the cycle model's, which ``measure`` asserts)."""

import numpy as np
import pytest

from bench.sparse_sweep import main, measure
from sim.cli import main_guard
from sim.randmodel import random_binned, random_model


@pytest.mark.parametrize("args, words", [
    (["--gesture-limit", "0"], ["--gesture-limit", "0"]),
    (["--dense-limit", "-1"], ["--dense-limit", "-1"]),
])
def test_bad_input(tmp_path, capsys, args, words):
    out = tmp_path / "s.json"
    rc = main_guard(main, [*args, "--out", str(out)], prog="python -m bench.sparse_sweep")
    err = capsys.readouterr().err
    assert rc == 2
    assert all(w in err for w in words), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_part(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--only", "nope", "--out", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "nope" in err and len(err.strip().splitlines()) == 1


def test_missing_out_directory(tmp_path, capsys):
    rc = main_guard(main, ["--out", str(tmp_path / "no" / "s.json")],
                    prog="python -m bench.sparse_sweep")
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_measure_both_sweeps():
    rng = np.random.default_rng(8)
    model = random_model(rng, input_shape=(2, 8, 8), timesteps=4, readout="spike_count",
                         kinds=("conv2d", "linear"))
    for layer in model.layers:
        layer.bias = None
    binned = random_binned(rng, model.input.shape, 4, model.input.count_clip, density=0.1)
    dense, sparse = measure(model, binned, "dense"), measure(model, binned, "sparse")
    assert dense["prediction"] == sparse["prediction"]
    assert sparse["sparse_layers"] == [True, True] and dense["sparse_layers"] == [False, False]
    assert sparse["neuron_updates"] <= dense["neuron_updates"] == dense["dense_neuron_updates"]
    assert all(s <= d for s, d in zip(sparse["swept_words"], dense["swept_words"]))


def test_measure_banked():
    """Banks change the time, not the work: the same words swept, the same prediction."""
    from bench.sparse_sweep import designs, model_banks
    from sim.randmodel import model_from_spec
    rng = np.random.default_rng(9)
    model = model_from_spec([("conv2d", 4, 5, 2, 2), ("conv2d", 4, 3, 2, 1), ("linear", 3)],
                            rng, input_shape=(2, 16, 16), timesteps=3)
    for layer in model.layers:
        layer.bias = None
    assert model_banks(model) == {"conv1": 3, "conv2": 3}
    assert designs(model) == ["dense", "sparse", "banked"]
    binned = random_binned(rng, model.input.shape, 3, 1, density=0.1)
    sparse = measure(model, binned, "sparse")
    banked = measure(model, binned, "sparse", banks=model_banks(model))
    assert banked["swept_words"] == sparse["swept_words"]
    assert banked["prediction"] == sparse["prediction"]
    assert banked["energy_nj"] == sparse["energy_nj"]
    assert banked["latency_cycles"] != sparse["latency_cycles"]

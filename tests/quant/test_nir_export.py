"""NIR export: model -> .nir file -> import (exact) gives the identical model and spikes."""

import subprocess
import sys

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from quant.importers.nir import model_from_nir  # noqa: E402
from quant.nir_export import THRESHOLD_MARGIN, export_nir, main as export_main  # noqa: E402
from sim.cli import main_guard  # noqa: E402
from sim.model import load_model, model_to_json, save_model  # noqa: E402
from sim.randmodel import random_binned, random_model  # noqa: E402
from sim.reference import run  # noqa: E402


def _doc(model, tmp):
    """``model.json`` without checksums, ROM records and meta (arrays compared apart)."""
    doc = model_to_json(model, tmp)
    for key in ("meta", "roms"):
        doc.pop(key, None)
    for layer in doc["layers"]:
        for obj in (layer, *layer.get("synapses", ())):
            for k in ("weights", "bias"):
                if obj.get(k):
                    obj[k] = obj[k]["file"]
    return doc


def _assert_identical(a, b, tmp_path):
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    assert _doc(a, tmp_path / "a") == _doc(b, tmp_path / "b")
    for la, lb in zip(a.layers, b.layers):
        for k in ("weights", "bias"):
            x, y = getattr(la, k), getattr(lb, k)
            assert (x is None) == (y is None), (la.name, k)
            if x is not None:
                np.testing.assert_array_equal(x, y, err_msg=f"{la.name}.{k}")


@pytest.mark.parametrize("seed", range(12))
def test_round_trip_identical_model_and_spikes(tmp_path, seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng, **({"reset": ["subtract", "zero", "none"][seed % 3]}
                                 if seed < 6 else {}))
    disc = "exp" if seed % 2 else "euler"
    export_nir(model, tmp_path / "g.nir", discretization=disc)
    back = model_from_nir(tmp_path / "g.nir")            # dt, T, widths from the metadata
    assert back.meta["import"]["mode"] == "integer"
    assert back.meta["import"]["discretization"] == disc
    _assert_identical(model, back, tmp_path)
    binned = random_binned(rng, model.input.shape, model.input.timesteps,
                           model.input.count_clip)
    r1, r2 = run(model, binned, backend="numpy"), run(back, binned, backend="numpy")
    for layer in model.layers:
        np.testing.assert_array_equal(r1.spikes[layer.name], r2.spikes[layer.name])
        np.testing.assert_array_equal(r1.states[layer.name], r2.states[layer.name])
    np.testing.assert_array_equal(r1.scores, r2.scores)


def test_graph_is_standard_nir(tmp_path):
    """Readable with NIR's own type check; tau, r, thresholds as documented."""
    rng = np.random.default_rng(7)
    model = random_model(rng, kinds=["conv2d", "sumpool2d", "linear"], reset="subtract")
    model.layers[0].beta_num, model.layers[0].beta_frac_bits = 3, 2
    model.layers[1].beta_num, model.layers[1].beta_frac_bits = 1, 0
    model.layers[2].beta_num, model.layers[2].beta_frac_bits = 0, 4
    dt = 2e-3
    warnings = export_nir(model, tmp_path / "g.nir", dt=dt)
    assert len(warnings) == 3 and all("reset 'subtract'" in w for w in warnings)
    g = nir.read(tmp_path / "g.nir", type_check=True)
    kinds = [type(g.nodes[k]).__name__ for k in ("l0_conv2d", "l0_conv2d_neuron", "l1_sumpool2d",
                                                 "l1_sumpool2d_neuron", "l2_linear_flatten",
                                                 "l2_linear", "l2_linear_neuron")]
    assert kinds == ["Conv2d", "LIF", "SumPool2d", "IF", "Flatten", "Affine", "LIF"]
    lif = g.nodes["l0_conv2d_neuron"]
    assert np.allclose(1 - dt / lif.tau, 0.75) and np.allclose(lif.r * (1 - 0.75), 1)
    assert lif.tau.shape == tuple(model.layers[0].out_shape)
    assert np.allclose(g.nodes["l2_linear_neuron"].tau, dt)             # beta 0: tau = dt
    thr = model.layers[0].threshold_per_neuron().reshape(model.layers[0].out_shape)
    np.testing.assert_array_equal(lif.v_threshold, thr - THRESHOLD_MARGIN)
    np.testing.assert_array_equal(g.nodes["l0_conv2d"].weight, model.layers[0].weights)
    assert g.nodes["l0_conv2d_neuron"].metadata["reset"] == "subtract"
    # exp: exp(-dt / tau) is beta
    export_nir(model, tmp_path / "e.nir", dt=dt, discretization="exp")
    e = nir.read(tmp_path / "e.nir")
    assert np.allclose(np.exp(-dt / e.nodes["l0_conv2d_neuron"].tau), 0.75)


def test_imported_foreign_view_without_metadata(tmp_path):
    """Stripped of our metadata, the graph still imports (reset zero, explicit dt)."""
    rng = np.random.default_rng(8)
    model = random_model(rng, kinds=["conv2d", "linear"], reset="zero", readout="spike_count")
    export_nir(model, tmp_path / "g.nir")
    g = nir.read(tmp_path / "g.nir")
    g.metadata = {}
    for node in g.nodes.values():
        node.metadata = {}
    back = model_from_nir(g, dt=1e-3, discretization="euler", timesteps=model.input.timesteps,
                          count_clip=model.input.count_clip, weight_bits=16, state_bits=32)
    binned = random_binned(rng, model.input.shape, model.input.timesteps,
                           model.input.count_clip)
    r1, r2 = run(model, binned, backend="numpy"), run(back, binned, backend="numpy")
    for a, b in zip(model.layers, back.layers):     # same integers, wider states: same run
        np.testing.assert_array_equal(a.threshold, b.threshold)
        np.testing.assert_array_equal(a.weights, b.weights)
        assert not r1.overflow[a.name].any()
        np.testing.assert_array_equal(r1.spikes[a.name], r2.spikes[b.name])


def test_cli_round_trip_and_bad_input(tmp_path, capsys):
    rng = np.random.default_rng(9)
    model = random_model(rng)
    save_model(model, tmp_path / "m")
    r = subprocess.run([sys.executable, "-m", "quant.nir_export", str(tmp_path / "m"),
                        "--out", str(tmp_path / "g.nir")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "quant.importers", "nir", str(tmp_path / "g.nir"),
                        "--out", str(tmp_path / "back")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _assert_identical(load_model(tmp_path / "m"), load_model(tmp_path / "back"), tmp_path)
    # bad input: one line naming the file, exit 2, nothing written
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{")
    for argv, needle in (([str(tmp_path / "broken")], "broken"),
                         ([str(tmp_path / "nope")], "nope"),
                         ([str(tmp_path / "m"), "--dt", "0"], "--dt")):
        out = tmp_path / "x.nir"
        rc = main_guard(export_main, [*argv, "--out", str(out)], prog="quant.nir_export")
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
        assert not out.exists()

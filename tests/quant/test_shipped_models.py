"""The shipped models: the torch integer mode and the reference agree on the test sets.

Every spike and every stored state (and current) of every layer and step is compared,
for every test sample of ``models/digits`` and for a slice of ``models/gesture_synth``'s
and ``models/temporal_synth``'s test sets (the full sets are measured by
``bench/quant_accuracy.py``).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from quant.train import data_from_checkpoint, integer_net, load_checkpoint
from sim.model import load_model
from sim.reference import run

MODELS = Path(__file__).resolve().parents[2] / "models"


def _check(name, limit, batch):
    path = MODELS / name
    if not (path / "checkpoint.pt").is_file():
        pytest.fail(f"{path} has no checkpoint.pt")
    model = load_model(path)
    doc = load_checkpoint(path / "checkpoint.pt")
    data = data_from_checkpoint(doc, "test", limit=limit)
    net = integer_net(model)
    n = len(data)
    preds = []
    for a in range(0, n, batch):
        idx = list(range(a, min(n, a + batch)))
        x, _ = data.frames(idx)
        with torch.no_grad():
            scores, tr = net(torch.from_numpy(x), record=True)
        for j, i in enumerate(idx):
            ref = run(model, data.binned(i), record=True)
            for layer in model.layers:
                assert np.array_equal(tr["spikes"][layer.name][:, j].numpy(),
                                      ref.spikes[layer.name]), (i, layer.name)
                assert np.array_equal(tr["states"][layer.name][:, j].numpy(),
                                      ref.states[layer.name]), (i, layer.name)
                if layer.current is not None:
                    assert np.array_equal(tr["currents"][layer.name][:, j].numpy(),
                                          ref.currents[layer.name]), (i, layer.name)
            assert np.array_equal(scores[j].numpy(), ref.scores)
            preds.append(ref.prediction)
    return model, data, np.array(preds)


def test_digits_every_test_sample():
    model, data, preds = _check("digits", None, 120)
    assert len(preds) == 360
    acc = float((preds == data.labels).mean())
    assert acc == pytest.approx(model.meta["accuracy"]["fixed_accuracy"])
    assert acc >= 0.95


def test_gesture_synth_test_slice():
    model, data, preds = _check("gesture_synth", 16, 8)
    assert model.n_neurons == 27656 and model.layers[0].in_shape == (2, 128, 128)



def test_temporal_synth_test_slice():
    """The graph: a residual block (identity skip), delayed taps, a recurrent
    current-based layer; small enough for an Arty A7-35T."""
    model, data, preds = _check("temporal_synth", 48, 24)
    layers = {l.name: l for l in model.layers}
    assert [s.type for s in layers["res2"].synapses] == ["conv2d", "identity"]
    assert layers["taps"].synapses[0].taps == 5
    assert layers["rec"].current is not None and layers["rec"].synapses[1].source == "rec"
    assert model.input.shape == (2, 16, 16) and model.n_neurons == 1958
    # the first 48 test samples: the exported report's predictions
    report = json.loads((MODELS / "temporal_synth" / "report.json").read_text())
    assert preds.tolist() == report["fixed_predictions"][:48]
    doc = load_checkpoint(MODELS / "temporal_synth" / "chain_baseline.pt")
    assert doc["train"]["arch"] == "temporal_chain"

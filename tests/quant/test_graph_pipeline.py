"""Graph training end to end with tiny budgets: quant.train with a graph architecture,
quant.qat, quant.export, the exported version-2 model against the reference."""

import json
import sys

import numpy as np
import pytest

from quant import export as qexport
from quant import qat as qqat
from quant import train as qtrain
from quant.graph import FloatGraph, GraphNet
from sim.model import chain_problem, load_model
from sim.reference import run


@pytest.fixture(scope="module")
def temporal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "temporal"
    rc = qtrain.main(["--dataset", "temporal_synth", "--out", str(out), "--epochs", "1",
                      "--max-steps", "2", "--limit", "12", "--batch-size", "6",
                      "--calibrate", "0", "--no-progress"])
    assert rc == 0
    return out


def test_graph_architectures_build():
    net = qtrain.build_net("temporal", (2, 16, 16), 6, timesteps=16)
    assert isinstance(net, GraphNet)
    assert sum(int(np.prod(l.out_shape)) for l in net.layers) == 1958
    assert qtrain.n_weights(net) == 16472
    names = {l.name: l for l in net.layers}
    assert [s.type for s in names["res2"].synapses] == ["conv2d", "identity"]
    assert names["taps"].synapses[0].taps == 5 and names["rec"].current_beta == 0.75
    assert names["rec"].synapses[1].source == "rec" and names["rec"].synapses[1].delay == 1
    assert names["res2"].w1.detach().tolist() == [1.0] * 8       # a plain skip at first
    chain = qtrain.build_net("temporal_chain", (2, 16, 16), 6, timesteps=16)
    assert qtrain.n_weights(chain) == 16072


def test_graph_train_qat_export(temporal_run, tmp_path):
    doc = qtrain.load_checkpoint(temporal_run)
    assert isinstance(doc["floatnet"], FloatGraph)
    assert doc["train"]["arch"] == "temporal" and doc["train"]["beta"] == 0.5
    assert [h["steps"] for h in doc["history"]] == [2]
    init = qtrain.build_net("temporal", (2, 16, 16), 6, timesteps=16, beta=0.5)
    trained = qtrain.net_from_checkpoint(doc)
    assert not np.allclose(init.layers[0].w0.detach().numpy(),
                           trained.layers[0].w0.detach().numpy())
    qout = tmp_path / "qat"
    assert qqat.main([str(temporal_run / "checkpoint.pt"), "--out", str(qout),
                      "--weight-bits", "6", "--epochs", "1", "--max-steps", "1", "--limit",
                      "12", "--no-progress"]) == 0
    out = tmp_path / "model"
    assert qexport.main([str(qout / "checkpoint.pt"), "--out", str(out), "--limit", "6",
                         "--no-progress", "--quiet"]) == 0
    model = load_model(out)
    assert chain_problem(model) is not None
    assert json.loads((out / "model.json").read_text())["version"] == 2
    layers = {l.name: l for l in model.layers}
    assert layers["rec"].current is not None and layers["taps"].synapses[0].taps == 5
    assert all(s.weight_bits == 6 for l in model.layers for s in l.synapses
               if s.weights is not None)
    report = json.loads((out / "report.json").read_text())
    assert report["torch_integer_agreement"] == 1.0 and report["samples"] == 6
    data = qtrain.data_from_checkpoint(qtrain.load_checkpoint(qout), "test", limit=6)
    preds = [run(model, data.binned(i)).prediction for i in range(6)]
    assert preds == report["fixed_predictions"]
    assert report["layers"][2]["type"] == "conv2d+identity"


def test_graph_arch_from_json_and_errors(tmp_path, capsys):
    spec = [{"name": "a", "synapses": [["input", "conv2d", {"out": 2, "kernel": 3,
                                                            "stride": 4}]]},
            {"name": "b", "synapses": [["a", "linear", {"out": 5, "taps": 2}],
                                       ["b", "identity", {"delay": 1}]], "current_beta": 0.5},
            {"name": "c", "synapses": [["b", "linear", {}]], "spike_limit": 2}]
    good = tmp_path / "arch.json"
    good.write_text(json.dumps(spec))
    out = tmp_path / "run"
    assert qtrain.main(["--dataset", "temporal_synth", "--arch", str(good), "--out", str(out),
                        "--epochs", "1", "--max-steps", "1", "--limit", "6",
                        "--calibrate", "0", "--no-progress"]) == 0
    doc = qtrain.load_checkpoint(out)
    assert [l.out_shape for l in doc["floatnet"].layers] == [(2, 4, 4), (5,), (6,)]
    assert doc["train"]["arch"] == spec
    bad_kind = [dict(spec[0], synapses=[["input", "conv3d", {}]])]
    bad_shape = spec[:1] + [dict(spec[1], synapses=[["a", "linear", {"out": 5}],
                                                    ["a", "identity", {}]])] + spec[2:]
    bad_src = spec[:1] + [dict(spec[1], synapses=[["x", "linear", {"out": 5}]])]
    cases = [("nope", "neither a known topology"),
             (bad_kind, "unknown synapse kind 'conv3d'"),
             (bad_shape, "layer b: synapses[1]: makes shape [2, 4, 4], the layer has [5]"),
             (bad_src, "layer b: synapses[0]: unknown source 'x'")]
    for i, (arch, want) in enumerate(cases):
        if not isinstance(arch, str):
            path = tmp_path / f"bad{i}.json"
            path.write_text(json.dumps(arch))
            arch = str(path)
        with pytest.raises(SystemExit) as exc:
            sys.exit(qtrain.cli(["--dataset", "temporal_synth", "--arch", arch, "--out",
                                 str(tmp_path / f"o{i}"), "--limit", "6", "--no-progress"]))
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert exc.value.code == 2 and len(lines) == 1 and want in lines[0], (arch, err)
        assert not (tmp_path / f"o{i}").exists()

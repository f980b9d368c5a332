"""NIR import: graphs built with ``nir`` directly, written, read back and imported.

The imported model is checked spike for spike (and state for state) against an
independent simulator: the equivalent snnTorch network, stepped by snnTorch's own
``Leaky`` (NIR's LIF with ``v_reset = 0`` is snnTorch's reset-to-zero, and the
step is chosen so that the discretized ``beta`` is 1/2 or 1 with integer membranes,
see tests/quant/test_import_snntorch.py).
"""

import math
import subprocess
import sys

import numpy as np
import pytest

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")
snn = pytest.importorskip("snntorch")
nn = torch.nn

from quant.importers import NetImportError  # noqa: E402
from quant.importers.__main__ import main as cli_main  # noqa: E402
from quant.importers.nir import import_nir, model_from_nir  # noqa: E402
from sim.cli import main_guard  # noqa: E402
from sim.model import load_model  # noqa: E402
from tests.quant.test_import_snntorch import _compare, _frames, _leaky  # noqa: E402

DT = 1e-3


def _tau(beta, disc):
    """The tau that gives ``beta`` for one step of ``DT`` (the test's own formulas)."""
    return DT / (1 - beta) if disc == "euler" else -DT / math.log(beta)


def _lif(shape, beta, thr, disc, v_leak=0.0, **kw):
    tau = _tau(beta, disc)
    return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / DT if disc == "euler"
                                                      else 1 / (1 - beta)),
                   v_leak=np.full(shape, float(v_leak)), v_threshold=np.full(shape, float(thr)),
                   v_reset=np.zeros(shape), **kw)


def _net_pair(rng, disc):
    """A NIR graph and the same network in snnTorch (integer weights, exact runs)."""
    w1 = rng.integers(-3, 4, (4, 2, 3, 3)) * 16.0
    b1 = rng.integers(-1, 2, 4) * 16.0
    w2 = rng.integers(-2, 4, (6, 64)) * 16.0
    v_leak = 32.0                                   # bias v_leak * (1 - beta) = 16
    nodes = {
        "input": nir.Input(np.array([2, 8, 8])),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=w1, stride=1, padding=1, dilation=1,
                           groups=1, bias=b1),
        "lif1": _lif((4, 8, 8), 0.5, 20, disc),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "if2": nir.IF(r=np.ones((4, 4, 4)), v_threshold=np.full((4, 4, 4), 1.0),
                      v_reset=np.zeros((4, 4, 4))),
        "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0),
        "fc": nir.Affine(weight=w2, bias=np.zeros(6)),
        "lif3": _lif((6,), 0.5, 40, disc, v_leak=v_leak),
        "output": nir.Output(np.array([6])),
    }
    order = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])))
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky(0.5, 20.0, "zero"),
                        nn.AvgPool2d(2, divisor_override=1), _leaky(1.0, 1.0, "zero"),
                        nn.Flatten(), nn.Linear(64, 6), _leaky(0.5, 40.0, "zero"))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1))
        net[0].bias.copy_(torch.tensor(b1))
        net[5].weight.copy_(torch.tensor(w2))
        net[5].bias.fill_(v_leak * 0.5)
    return graph, net


@pytest.mark.parametrize("disc", ["euler", "exp"])
def test_written_graph_imports_and_fires_like_snntorch(tmp_path, disc):
    graph, net = _net_pair(np.random.default_rng(1), disc)
    nir.write(tmp_path / "g.nir", graph)
    model = model_from_nir(tmp_path / "g.nir", dt=DT, discretization=disc, timesteps=4)
    imp = model.meta["import"]
    assert imp["mode"] == "integer" and imp["discretization"] == disc and imp["dt_s"] == DT
    assert [layer.type for layer in model.layers] == ["conv2d", "sumpool2d", "linear"]
    assert [(layer.beta_num, layer.beta_frac_bits) for layer in model.layers] == \
        [(1, 1), (1, 0), (1, 1)]
    assert [layer.reset for layer in model.layers] == ["zero"] * 3
    assert model.layers[2].bias.tolist() == [16] * 6
    assert model.layers[0].threshold.tolist() == [21] * 4      # v > 20 -> v >= 21
    assert model.input.dt_us == 1000 and model.input.timesteps == 4
    for seed in range(3):
        _compare(net, model, _frames(np.random.default_rng(seed), 4, (2, 8, 8), 0.5),
                 [1, 1, 1])


def test_avgpool_node_folds_into_threshold():
    g = _chain(("input", nir.Input(np.array([2, 6, 6]))),
               ("pool", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                      padding=np.array([0, 0]))),
               ("if1", nir.IF(r=np.ones((2, 3, 3)), v_threshold=np.full((2, 3, 3), 0.3),
                              v_reset=np.zeros((2, 3, 3)))),
               ("output", nir.Output(np.array([2, 3, 3]))))
    model = model_from_nir(g, timesteps=5)
    assert model.layers[0].type == "sumpool2d" and model.layers[0].threshold.tolist() == [2, 2]
    net = nn.Sequential(nn.AvgPool2d(2), _leaky(1.0, 0.3, "zero"))
    for seed in range(3):
        _compare(net, model, _frames(np.random.default_rng(seed), 5, (2, 6, 6), 0.2), [4])


def test_discretization_is_explicit_and_changes_beta(tmp_path):
    graph, _ = _net_pair(np.random.default_rng(2), "euler")       # tau = 2 dt
    nir.write(tmp_path / "g.nir", graph)
    with pytest.raises(NetImportError, match=r"node lif1 \(LIF\): .*--discretization"):
        import_nir(tmp_path / "g.nir", dt=DT, timesteps=4)
    with pytest.raises(NetImportError, match=r"node lif1 \(LIF\): .*dt"):
        import_nir(tmp_path / "g.nir", discretization="euler", timesteps=4)
    with pytest.raises(NetImportError, match="--timesteps"):
        import_nir(tmp_path / "g.nir", dt=DT, discretization="euler")
    # the same tau read with exp: beta = exp(-1/2), gain r (1 - beta) is not an integer
    net, integer, _ = import_nir(tmp_path / "g.nir", dt=DT, discretization="exp", timesteps=4)
    assert not integer and net.meta["import"]["mode"] == "float"
    assert net.layers[0].beta == pytest.approx(math.exp(-0.5), rel=1e-12)
    assert np.allclose(net.layers[0].weight, 2 * (1 - math.exp(-0.5)) *
                       graph.nodes["conv"].weight)


def test_if_gain_option(tmp_path):
    w = np.array([[1.0, 2.0], [3.0, -1.0]])
    nodes = {"input": nir.Input(np.array([2])), "fc": nir.Affine(weight=w, bias=np.zeros(2)),
             "if1": nir.IF(r=np.full(2, 1000.0), v_threshold=np.full(2, 2.0),
                           v_reset=np.zeros(2)),
             "output": nir.Output(np.array([2]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "if1"), ("if1", "output")])
    net, integer, _ = import_nir(g, timesteps=3, if_gain="r_dt", dt=DT)
    np.testing.assert_array_equal(net.layers[0].weight, w)
    assert integer and net.layers[0].threshold == 3.0 and net.input_shape == (2, 1, 1)
    net, integer, _ = import_nir(g, timesteps=3)                   # default: gain r
    np.testing.assert_array_equal(net.layers[0].weight, 1000 * w)
    with pytest.raises(NetImportError, match=r"node if1 \(IF\): if_gain 'r_dt' needs"):
        import_nir(g, timesteps=3, if_gain="r_dt")


def _chain(*pairs):
    nodes = dict(pairs)
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])))


def _mlp(**lif_kw):
    kw = dict(tau=np.full(3, 2e-3), r=np.full(3, 2.0), v_leak=np.zeros(3),
              v_threshold=np.ones(3), v_reset=np.zeros(3))
    kw.update(lif_kw)
    return _chain(("input", nir.Input(np.array([4]))),
                  ("fc", nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))),
                  ("lif", nir.LIF(**kw)), ("output", nir.Output(np.array([3]))))


@pytest.mark.parametrize("graph, match", [
    (lambda: _mlp(v_reset=np.ones(3)), r"node lif \(LIF\): v_reset 1 is not 0"),
    (lambda: _mlp(tau=np.array([2e-3, 2e-3, 4e-3])), r"node lif \(LIF\): tau differs"),
    (lambda: _mlp(tau=np.full(3, 5e-4)), r"node lif \(LIF\): tau 0.0005 < dt 0.001"),
    (lambda: _mlp(v_threshold=np.array([1.0, 0.0, 1.0])), r"node lif: threshold must be positive"),
    (lambda: _chain(("input", nir.Input(np.array([1, 4, 4]))),
                    ("pool", nir.SumPool2d(kernel_size=np.array([2, 2]),
                                           stride=np.array([2, 2]), padding=np.array([0, 0]))),
                    ("lif", nir.LIF(tau=np.full((1, 2, 2), 2e-3), r=np.full((1, 2, 2), 2.0),
                                    v_leak=np.ones((1, 2, 2)), v_threshold=np.ones((1, 2, 2)),
                                    v_reset=np.zeros((1, 2, 2)))),
                    ("output", nir.Output(np.array([1, 2, 2])))),
     r"node lif: a leak bias \(v_leak\) after pooling 'pool'"),
    (lambda: _chain(("input", nir.Input(np.array([4]))),
                    ("fc", nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))),
                    ("fc2", nir.Affine(weight=np.ones((3, 3)), bias=np.zeros(3))),
                    ("output", nir.Output(np.array([3])))),
     r"node fc2: Linear follows linear 'fc' without a neuron"),
])
def test_rejects_naming_the_node(graph, match):
    with pytest.raises(NetImportError, match=match):
        import_nir(graph(), dt=DT, discretization="euler", timesteps=3)


def test_branches_need_the_graph_importer():
    """A branch (the input read twice, joined at one neuron node) is a graph: the chain
    API refuses it with a pointer, model_from_nir imports it as a two-synapse layer."""
    g = _mlp()
    g.nodes["fc_b"] = nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))
    g.edges.append(("input", "fc_b"))
    g.edges.append(("fc_b", "lif"))
    with pytest.raises(NetImportError, match=r"use model_from_nir"):
        import_nir(g, dt=DT, discretization="euler", timesteps=3)
    model = model_from_nir(g, dt=DT, discretization="euler", timesteps=3)
    assert [s.type for s in model.layers[0].synapses] == ["linear", "linear"]


def test_cli(tmp_path, capsys):
    graph, _ = _net_pair(np.random.default_rng(3), "euler")
    nir.write(tmp_path / "g.nir", graph)
    out = tmp_path / "m"
    r = subprocess.run([sys.executable, "-m", "quant.importers", "nir", str(tmp_path / "g.nir"),
                        "--out", str(out), "--dt", "1e-3", "--discretization", "euler",
                        "--timesteps", "4"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    direct = model_from_nir(tmp_path / "g.nir", dt=DT, discretization="euler", timesteps=4)
    got = load_model(out)
    for a, b in zip(got.layers, direct.layers):
        assert a.name == b.name and a.threshold.tolist() == b.threshold.tolist()
        assert (a.weights is None and b.weights is None) or (a.weights == b.weights).all()
    assert "integer mode" in r.stdout
    (tmp_path / "junk.nir").write_text("not hdf5")
    for argv, needle in (([str(tmp_path / "g.nir"), "--timesteps", "4"], "node lif1 (LIF)"),
                         ([str(tmp_path / "junk.nir"), "--timesteps", "4"], "junk.nir"),
                         ([str(tmp_path / "g.nir"), "--dt", "-1", "--discretization", "euler",
                           "--timesteps", "4"], "--dt")):
        dest = tmp_path / "bad"
        rc = main_guard(cli_main, ["nir", *argv, "--out", str(dest)], prog="quant.importers",
                        errors=(NetImportError,))
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
        assert not dest.exists()

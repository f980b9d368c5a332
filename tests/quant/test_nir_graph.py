"""NIR graphs: v2 model -> NIR -> import is the identical model; branches, joins,
recurrence, delays, current-based and non-spiking nodes import as the contract says;
everything not representable is refused naming the node (CLI: exit 2, nothing written)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

nir = pytest.importorskip("nir")

from quant.importers import NetImportError  # noqa: E402
from quant.importers.__main__ import main as cli_main  # noqa: E402
from quant.importers.nir import model_from_nir  # noqa: E402
from quant.nir_export import export_nir, graph_to_nir  # noqa: E402
from sim.cli import main_guard  # noqa: E402
from sim.events import BinnedEvents  # noqa: E402
from sim.model import model_to_json  # noqa: E402
from sim.randmodel import random_binned, random_graph  # noqa: E402
from sim.reference import run  # noqa: E402

DT = 1e-3


def _doc(model, tmp):
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
    for d in ("a", "b"):
        (tmp_path / d).mkdir(exist_ok=True)
    assert _doc(a, tmp_path / "a") == _doc(b, tmp_path / "b")
    for la, lb in zip(a.layers, b.layers):
        for k in ("bias",):
            x, y = getattr(la, k), getattr(lb, k)
            assert (x is None) == (y is None), (la.name, k)
            if x is not None:
                np.testing.assert_array_equal(x, y, err_msg=f"{la.name}.{k}")
        for j, (sa, sb) in enumerate(zip(la.synapses, lb.synapses)):
            assert (sa.weights is None) == (sb.weights is None)
            if sa.weights is not None:
                np.testing.assert_array_equal(sa.weights, sb.weights,
                                              err_msg=f"{la.name}.synapses[{j}]")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), disc=st.sampled_from(["euler", "exp"]))
def test_v2_round_trip_is_the_identical_model(tmp_path_factory, seed, disc):
    tmp = tmp_path_factory.mktemp("rt")
    rng = np.random.default_rng(seed)
    model = random_graph(rng)
    export_nir(model, tmp / "g.nir", discretization=disc)
    back = model_from_nir(tmp / "g.nir")
    assert back.meta["import"]["mode"] == "integer"
    _assert_identical(model, back, tmp)
    binned = random_binned(rng, model.input.shape, model.input.timesteps,
                           model.input.count_clip)
    r1, r2 = run(model, binned, backend="numpy"), run(back, binned, backend="numpy")
    for layer in model.layers:
        np.testing.assert_array_equal(r1.spikes[layer.name], r2.spikes[layer.name])
        np.testing.assert_array_equal(r1.states[layer.name], r2.states[layer.name])


# -- hand-built graphs ------------------------------------------------------------------

def _if(n, thr=2.0):
    return nir.IF(r=np.ones(n), v_threshold=np.full(n, thr), v_reset=np.zeros(n))


def _aff(w, b=None):
    w = np.asarray(w, dtype=np.float64)
    return nir.Affine(weight=w, bias=np.zeros(w.shape[0]) if b is None else np.asarray(b, float))


def _graph(nodes, edges, **meta):
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def test_residual_join_branch_and_recurrence():
    """input -> fc1 -> a; a -> fc2 -> b; a -> b (plain edge: identity, weight 1);
    b -> fc_rec -> b (cycle: read one step late); Output reads b."""
    rng = np.random.default_rng(0)
    w1 = rng.integers(0, 3, size=(3, 4))
    w2 = rng.integers(-1, 3, size=(3, 3))
    wr = rng.integers(-2, 2, size=(3, 3))
    g = _graph({"input": nir.Input(np.array([4])), "fc1": _aff(w1), "a": _if(3),
                "fc2": _aff(w2), "b": _if(3), "fc_rec": _aff(wr),
                "output": nir.Output(np.array([3]))},
               [("input", "fc1"), ("fc1", "a"), ("a", "fc2"), ("fc2", "b"), ("a", "b"),
                ("b", "fc_rec"), ("fc_rec", "b"), ("b", "output")])
    model = model_from_nir(g, timesteps=6)
    a, b = model.layers
    assert [(s.source, s.type, s.delay) for s in b.synapses] == \
        [("a", "linear", 0), ("a", "identity", 0), ("b", "linear", 1)]
    np.testing.assert_array_equal(b.synapses[1].weights, [1, 1, 1])
    assert a.threshold.tolist() == [3, 3, 3]           # v > 2 on integers: v >= 3
    # spikes against a direct simulation of the NIR graph's meaning
    x = rng.integers(0, 2, size=(6, 4))
    va, vb, sb_prev = np.zeros(3), np.zeros(3), np.zeros(3)
    exp_a, exp_b = [], []
    for t in range(6):
        va = va + w1 @ x[t]
        sa = (va > 2).astype(int)
        va = np.where(sa, 0, va)
        vb = vb + w2 @ sa + sa + wr @ sb_prev
        sb = (vb > 2).astype(int)
        vb = np.where(sb, 0, vb)
        sb_prev = sb
        exp_a.append(sa)
        exp_b.append(sb)
    r = run(model, BinnedEvents.from_frames(x.reshape(6, 4, 1, 1)), backend="numpy")
    np.testing.assert_array_equal(r.spikes["a"].reshape(6, 3), exp_a)
    np.testing.assert_array_equal(r.spikes["b"].reshape(6, 3), exp_b)


def test_delay_node_becomes_the_synapse_delay_and_cubalif_and_li_readout():
    g = _graph({"input": nir.Input(np.array([2])),
                "d": nir.Delay(np.full(2, 3 * DT)), "fc": _aff([[1, 2], [3, 1]]),
                "cuba": nir.CubaLIF(tau_syn=np.full(2, 2 * DT), tau_mem=np.full(2, 2 * DT),
                                    r=np.full(2, 2.0), v_leak=np.zeros(2),
                                    v_threshold=np.full(2, 3.0), v_reset=np.zeros(2),
                                    w_in=np.full(2, 2.0)),
                "fc2": _aff([[1, 1]]),
                "li": nir.LI(tau=np.full(1, 2 * DT), r=np.full(1, 2.0), v_leak=np.zeros(1)),
                "output": nir.Output(np.array([1]))},
               [("input", "d"), ("d", "fc"), ("fc", "cuba"), ("cuba", "fc2"), ("fc2", "li"),
                ("li", "output")])
    model = model_from_nir(g, dt=DT, discretization="euler", timesteps=5)
    cuba, li = model.layers
    assert cuba.synapses[0].delay == 3
    assert cuba.current is not None and (cuba.current.beta_num, cuba.current.beta_frac_bits) \
        == (1, 1)
    assert (cuba.beta_num, cuba.beta_frac_bits) == (1, 1)
    assert model.readout == "membrane" and li.reset == "none"


def test_sinabs_flavor_reads_if_as_multi_spike_iaf():
    g = _graph({"input": nir.Input(np.array([2])), "fc": _aff([[5, 0], [0, 1]]),
                "iaf": _if(2, thr=2.0), "output": nir.Output(np.array([2]))},
               [("input", "fc"), ("fc", "iaf"), ("iaf", "output")])
    model = model_from_nir(g, timesteps=3, if_flavor="sinabs")
    layer = model.layers[0]
    assert layer.reset == "subtract" and layer.threshold.tolist() == [2, 2]
    assert layer.v_min == -2
    assert layer.spike_limit == ((1 << 15) - 1) // 2      # never saturates
    assert model.meta["import"]["if_flavor"] == "sinabs"
    # 5 per step at threshold 2: 2 spikes, remainder 1, next step 6 -> 3 spikes ...
    r = run(model, BinnedEvents.from_frames(np.array([[1, 0], [1, 0], [1, 0]]).reshape(3, 2, 1, 1)),
            backend="numpy")
    assert r.spikes["iaf"][:, 0].tolist() == [2, 3, 2]
    plain = model_from_nir(g, timesteps=3)
    assert plain.layers[0].spike_limit == 1 and plain.meta["import"]["if_flavor"] == "nir"


def test_nested_graph_snntorch_rleaky_style():
    """snnTorch exports RLeaky as a nested graph input -> lif -> w_rec -> lif."""
    sub = _graph({"input": nir.Input(np.array([3])), "lif": _if(3),
                  "w_rec": _aff(np.eye(3)), "output": nir.Output(np.array([3]))},
                 [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    g = _graph({"input": nir.Input(np.array([2])), "fc": _aff(np.ones((3, 2))), "rl": sub,
                "output": nir.Output(np.array([3]))},
               [("input", "fc"), ("fc", "rl"), ("rl", "output")])
    model = model_from_nir(g, timesteps=3)
    (layer,) = model.layers
    assert layer.name == "rl_lif"
    assert [(s.source, s.delay) for s in layer.synapses] == [("input", 0), ("rl_lif", 1)]


# -- refusals -----------------------------------------------------------------------------

def _one_layer(syn, n_in=(1, 4, 4), out=None, neuron=None, pre=()):
    out = out or (1, 4, 4)
    nodes = {"input": nir.Input(np.array(n_in))}
    edges = []
    prev = "input"
    for name, node in [*pre, ("syn", syn)]:
        nodes[name] = node
        edges.append((prev, name))
        prev = name
    nodes["lif"] = neuron or nir.IF(r=np.ones(out), v_threshold=np.ones(out),
                                    v_reset=np.zeros(out))
    nodes["output"] = nir.Output(np.array(out))
    edges += [(prev, "lif"), ("lif", "output")]
    return _graph(nodes, edges)


def _conv(**kw):
    args = dict(input_shape=(4, 4), weight=np.ones((1, 1, 3, 3)), stride=1, padding=1,
                dilation=1, groups=1, bias=np.zeros(1))
    args.update(kw)
    return nir.Conv2d(**args)


REFUSED = [
    ("per-position delay",
     lambda: _one_layer(_conv(), pre=[("d", nir.Delay(np.arange(16.0).reshape(1, 4, 4) * DT))]),
     "node d (Delay): per-position delays"),
    ("dilation", lambda: _one_layer(_conv(dilation=2, padding=2)),
     "node syn (Conv2d): dilation [2, 2] is not representable"),
    ("groups", lambda: _one_layer(_conv(weight=np.ones((2, 1, 3, 3)), groups=2, bias=np.zeros(2)),
                                  n_in=(2, 4, 4), out=(2, 4, 4)),
     "node syn (Conv2d): groups=2 is not representable"),
    ("average pool 3x3",
     lambda: _one_layer(nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([3, 3]),
                                      padding=np.array([0, 0])), n_in=(1, 6, 6), out=(1, 2, 2)),
     "node syn (AvgPool2d): an average pool over 3x3 divides by 9, not a power of two"),
    ("reset to a value",
     lambda: _one_layer(_conv(), neuron=nir.IF(r=np.ones((1, 4, 4)),
                                               v_threshold=np.ones((1, 4, 4)),
                                               v_reset=np.full((1, 4, 4), 0.5)),
                        pre=[("d", nir.Delay(np.zeros((1, 4, 4))))]),
     "node lif (IF): a reset to v_reset 0.5 is not representable"),
    ("two operators on one path",
     lambda: _one_layer(_conv(), pre=[("c0", _conv()), ("d", nir.Delay(np.zeros((1, 4, 4))))]),
     "node syn (Conv2d): Conv2d follows the conv2d node c0"),
    ("bias behind a delay",
     lambda: _one_layer(nir.Delay(np.full((1, 4, 4), DT)), pre=[("c0", _conv(bias=np.ones(1)))]),
     "node syn (Delay): a delay after the bias of node c0"),
    ("LI inside the net",
     lambda: _graph({"input": nir.Input(np.array([2])), "fc": _aff(np.ones((2, 2))),
                     "li": nir.LI(tau=np.full(2, 2 * DT), r=np.ones(2), v_leak=np.zeros(2)),
                     "fc2": _aff(np.ones((2, 2))), "if": _if(2),
                     "output": nir.Output(np.array([2]))},
                    [("input", "fc"), ("fc", "li"), ("li", "fc2"), ("fc2", "if"),
                     ("if", "output")]),
     "node li (LI) does not spike"),
]


@pytest.mark.parametrize("graph, needle", [(g, n) for _, g, n in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_refused_with_one_line_exit_2_nothing_written(tmp_path, capsys, graph, needle):
    path = tmp_path / "g.nir"
    nir.write(str(path), graph())
    with pytest.raises(NetImportError, match=None) as e:
        model_from_nir(path, dt=DT, discretization="euler", timesteps=3)
    assert needle in str(e.value)
    dest = tmp_path / "out"
    rc = main_guard(cli_main, ["nir", str(path), "--out", str(dest), "--dt", str(DT),
                               "--discretization", "euler", "--timesteps", "3"],
                    prog="quant.importers", errors=(NetImportError,))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not dest.exists()


def test_exported_graph_is_a_valid_nir_graph_with_delays_and_cycles():
    model = random_graph(np.random.default_rng(6))
    g, warnings = graph_to_nir(model)
    kinds = {type(v).__name__ for v in g.nodes.values()}
    assert "Delay" in kinds and g.metadata["version"] == 2
    assert any(a == b.split("__")[0] for a, b in g.edges if "__" in b)   # a recurrent path


def test_cli_if_flavor_is_recorded(tmp_path, capsys):
    import json
    g = _graph({"input": nir.Input(np.array([2])), "fc": _aff([[5, 0], [0, 1]]),
                "iaf": _if(2), "output": nir.Output(np.array([2]))},
               [("input", "fc"), ("fc", "iaf"), ("iaf", "output")])
    nir.write(str(tmp_path / "g.nir"), g)
    for flavor, limit in (("sinabs", ((1 << 15) - 1) // 2), ("nir", None)):
        out = tmp_path / flavor
        rc = main_guard(cli_main, ["nir", str(tmp_path / "g.nir"), "--out", str(out),
                                   "--timesteps", "3", "--if-flavor", flavor],
                        prog="quant.importers", errors=(NetImportError,))
        assert rc == 0, capsys.readouterr().err
        doc = json.loads((out / "model.json").read_text())
        assert doc["meta"]["import"]["if_flavor"] == flavor
        assert doc["layers"][0].get("spike_limit") == limit

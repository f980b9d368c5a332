"""sinabs networks imported directly: integer nets spike exactly like sinabs' own forward
pass (every layer, every step); float nets predict the same class on >= 99 % of inputs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sinabs = pytest.importorskip("sinabs", reason="sinabs is a test-only package (scripts/test.sh)")
import sinabs.layers as sl  # noqa: E402
from sinabs.activation import MaxSpike, MembraneReset, MultiSpike, SingleSpike  # noqa: E402
from torch import nn  # noqa: E402

from quant.importers import NetImportError  # noqa: E402
from quant.importers.sinabs import import_sinabs  # noqa: E402
from sim.events import BinnedEvents  # noqa: E402
from sim.reference import run  # noqa: E402

T = 6
SHAPE = (2, 6, 6)


def _net(rng, integer, *, min_v=True, spike_fn=MultiSpike, reset=None, thr=None):
    def iaf():
        kw = dict(batch_size=1, spike_fn=spike_fn,
                  spike_threshold=float(thr if thr is not None else (3 if integer else 1.0)))
        if reset is not None:
            kw["reset_fn"] = reset
        if min_v:
            kw["min_v_mem"] = -kw["spike_threshold"]
        return sl.IAFSqueeze(**kw)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), iaf(),
                        sl.SumPool2d(2), iaf(), nn.Flatten(), nn.Linear(36, 5), iaf())
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if integer:
                    m.weight.copy_(torch.as_tensor(
                        rng.integers(-2, 4, size=tuple(m.weight.shape)), dtype=torch.float32))
                else:
                    m.weight.copy_(torch.as_tensor(rng.normal(0.1, 0.5, size=tuple(m.weight.shape)),
                                                   dtype=torch.float32))
                if m.bias is not None:
                    m.bias.copy_(torch.as_tensor(rng.integers(-1, 2, size=tuple(m.bias.shape))
                                                 if integer else rng.normal(0, 0.2, size=tuple(
                                                     m.bias.shape)), dtype=torch.float32))
    return net.eval()


def _sinabs_run(net, frames):
    """Per neuron layer: spikes (T, *shape) from sinabs' own forward pass."""
    rec = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: rec.__setitem__(k, o.detach()))
             for k, m in enumerate(net) if isinstance(m, sl.IAFSqueeze)]
    for m in net:
        if hasattr(m, "reset_states"):
            m.reset_states()
    with torch.no_grad():
        out = net(torch.as_tensor(frames, dtype=torch.float32))
    for h in hooks:
        h.remove()
    return rec, out.numpy()


def _frames(rng):
    return (rng.random((T, *SHAPE)) < 0.4).astype(np.int64)


NAMES = {1: "conv0", 3: "pool2", 6: "fc5"}


@pytest.mark.parametrize("variant", ["multi", "single", "max2", "reset_zero", "no_min_v"])
def test_integer_net_spikes_exactly_like_sinabs(variant):
    rng = np.random.default_rng(1)
    kw = {"multi": {}, "single": {"spike_fn": SingleSpike}, "max2": {"spike_fn": MaxSpike(2)},
          "reset_zero": {"reset": MembraneReset()}, "no_min_v": {"min_v": False}}[variant]
    net = _net(rng, True, **kw)
    model = import_sinabs(net, SHAPE, timesteps=T)
    assert model.meta["import"]["mode"] == "integer"
    assert [layer.name for layer in model.layers] == list(NAMES.values())
    for _ in range(5):
        frames = _frames(rng)
        rec, _ = _sinabs_run(net, frames)
        r = run(model, BinnedEvents.from_frames(frames), backend="numpy")
        for k, name in NAMES.items():
            got = r.spikes[name].astype(np.int64)
            want = rec[k].numpy().reshape(got.shape).astype(np.int64)
            np.testing.assert_array_equal(got, want, err_msg=f"{variant} {name}")
    if variant == "multi":
        assert all(layer.spike_limit > 1000 and layer.v_min == -3 for layer in model.layers)


def test_float_net_predicts_like_sinabs():
    rng = np.random.default_rng(2)
    net = _net(rng, False)
    model = import_sinabs(net, SHAPE, timesteps=T, weight_bits=12, state_bits=24)
    assert model.meta["import"]["mode"] == "float"
    n, agree = 200, 0
    for _ in range(n):
        frames = _frames(rng)
        _, out = _sinabs_run(net, frames)
        want = int(np.argmax(out.reshape(T, -1).sum(axis=0)))
        got = run(model, BinnedEvents.from_frames(frames), backend="numpy").prediction
        agree += int(got == want)
    assert agree >= 0.99 * n, agree


def test_leaky_subtract_and_reset_value_are_refused():
    net = nn.Sequential(nn.Linear(4, 2), sl.LIFSqueeze(tau_mem=2.0, batch_size=1))
    with pytest.raises(NetImportError, match=r"layer fc0 \(LIFSqueeze\): MembraneSubtract with "
                                             r"a leak"):
        import_sinabs(net, (4, 1, 1), timesteps=3)
    net = nn.Sequential(nn.Linear(4, 2), sl.IAFSqueeze(batch_size=1,
                                                       reset_fn=MembraneReset(reset_value=1.0)))
    with pytest.raises(NetImportError, match=r"layer fc0 \(IAFSqueeze\): a reset to 1 is not "
                                             r"representable"):
        import_sinabs(net, (4, 1, 1), timesteps=3)
    net = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), sl.IAFSqueeze(batch_size=1))
    with pytest.raises(NetImportError, match=r"layer conv0 \(Conv2d\): groups=2"):
        import_sinabs(net, (2, 4, 4), timesteps=3)


def test_through_nir_with_the_sinabs_flavor_spikes_exactly_like_sinabs():
    """sinabs.to_nir writes IAF layers as plain NIR IF nodes; --if-flavor sinabs reads them
    back as sinabs' IAF (multi-spike, subtract, v_min = -threshold)."""
    from quant.importers.nir import model_from_nir
    rng = np.random.default_rng(3)
    net = _net(rng, True)
    graph = sinabs.to_nir(net, torch.zeros(1, *SHAPE))
    model = model_from_nir(graph, timesteps=T, if_flavor="sinabs")
    assert model.meta["import"]["if_flavor"] == "sinabs"
    assert model.meta["import"]["mode"] == "integer"
    plain = model_from_nir(graph, timesteps=T)            # the NIR reading: single spikes
    assert all(layer.spike_limit == 1 for layer in plain.layers)
    names = [layer.name for layer in model.layers]
    for _ in range(5):
        frames = _frames(rng)
        rec, _ = _sinabs_run(net, frames)
        r = run(model, BinnedEvents.from_frames(frames), backend="numpy")
        for k, name in zip(NAMES, names):
            got = r.spikes[name].astype(np.int64)
            np.testing.assert_array_equal(got, rec[k].numpy().reshape(got.shape), err_msg=name)


def test_iaf_recurrent_spikes_exactly_like_sinabs():
    rng = np.random.default_rng(4)
    rec = nn.Linear(5, 5, bias=False)
    net = nn.Sequential(nn.Linear(8, 5, bias=False),
                        sl.IAFRecurrent(rec_connect=rec, spike_threshold=2.0, min_v_mem=-2.0),
                        nn.Linear(5, 3, bias=False), sl.IAF(spike_threshold=1.0))
    with torch.no_grad():
        for m in (net[0], rec, net[2]):
            m.weight.copy_(torch.as_tensor(rng.integers(-2, 3, size=tuple(m.weight.shape)),
                                           dtype=torch.float32))
    model = import_sinabs(net, (8, 1, 1), timesteps=T)
    assert [(s.source, s.delay) for s in model.layers[0].synapses] == [("input", 0), ("fc0", 1)]
    for _ in range(5):
        frames = (rng.random((T, 8)) < 0.5).astype(np.int64)
        out = {}
        hooks = [net[k].register_forward_hook(
            lambda mod, i, o, k=k: out.__setitem__(k, o.detach().numpy()[0])) for k in (1, 3)]
        for m in net:
            if hasattr(m, "reset_states"):
                m.reset_states()
        with torch.no_grad():
            net(torch.as_tensor(frames, dtype=torch.float32).reshape(1, T, 8))
        for h in hooks:
            h.remove()
        r = run(model, BinnedEvents.from_frames(frames.reshape(T, 8, 1, 1)), backend="numpy")
        np.testing.assert_array_equal(r.spikes["fc0"].reshape(T, -1), out[1])
        np.testing.assert_array_equal(r.spikes["fc2"].reshape(T, -1), out[3])


def test_cli(tmp_path, capsys):
    from quant.importers.__main__ import main as cli_main
    from sim.cli import main_guard
    from sim.model import load_model
    net = _net(np.random.default_rng(5), True)
    torch.save(net, tmp_path / "net.pt")
    out = tmp_path / "m"
    argv = ["sinabs", str(tmp_path / "net.pt"), "--out", str(out), "--input-shape", "2,6,6",
            "--timesteps", str(T)]
    assert main_guard(cli_main, argv, prog="quant.importers", errors=(NetImportError,)) == 0
    assert "integer mode" in capsys.readouterr().out
    direct = import_sinabs(net, SHAPE, timesteps=T)
    got = load_model(out)
    for a, b in zip(got.layers, direct.layers):
        assert a.name == b.name and a.spike_limit == b.spike_limit
        np.testing.assert_array_equal(a.synapses[0].weights if a.synapses[0].weights is not None
                                      else 0, b.synapses[0].weights
                                      if b.synapses[0].weights is not None else 0)
    bad = nn.Sequential(nn.Linear(72, 2), sl.LIFSqueeze(tau_mem=2.0, batch_size=1))
    torch.save(bad, tmp_path / "bad.pt")
    dest = tmp_path / "bad"
    rc = main_guard(cli_main, ["sinabs", str(tmp_path / "bad.pt"), "--out", str(dest),
                               "--input-shape", "2,6,6", "--timesteps", "3"],
                    prog="quant.importers", errors=(NetImportError,))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "MembraneSubtract" in err, err
    assert not dest.exists()

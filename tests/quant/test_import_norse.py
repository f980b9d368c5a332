"""norse networks through NIR (norse's own ``to_nir``): integer nets spike exactly like
norse's forward pass (every layer, every step); float nets predict the same class on
>= 99 % of inputs. norse is LGPL and a test-only package: it is only called here."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("norse", reason="norse is a test-only package (scripts/test.sh)")
from norse.torch.functional.iaf import IAFParameters  # noqa: E402
from norse.torch.module.iaf import IAFCell  # noqa: E402
from norse.torch.utils.export_nir import to_nir  # noqa: E402

from quant.importers.nir import model_from_nir  # noqa: E402
from sim.events import BinnedEvents  # noqa: E402
from sim.reference import run  # noqa: E402

T, N_IN = 8, 6


def _net(rng, integer):
    def lin(i, o):
        m = torch.nn.Linear(i, o, bias=False)
        with torch.no_grad():
            w = rng.integers(-1, 4, size=(o, i)) if integer else rng.normal(0.4, 0.7, (o, i))
            m.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        return m
    thr = (lambda v: torch.tensor(float(v))) if integer else (lambda v: torch.tensor(v * 0.9))
    return [lin(N_IN, 5), IAFCell(p=IAFParameters(v_th=thr(2))),
            lin(5, 4), IAFCell(p=IAFParameters(v_th=thr(1)))]


def _norse_run(mods, frames):
    """Spikes of every IAFCell, step by step through norse's modules."""
    states = [None] * len(mods)
    out = {i: [] for i, m in enumerate(mods) if isinstance(m, IAFCell)}
    with torch.no_grad():
        for t in range(frames.shape[0]):
            x = torch.as_tensor(frames[t], dtype=torch.float32).reshape(1, -1)
            for i, m in enumerate(mods):
                if isinstance(m, IAFCell):
                    x, states[i] = m(x, states[i])
                    out[i].append(x.numpy().reshape(-1).copy())
                else:
                    x = m(x)
    return {i: np.array(v) for i, v in out.items()}


def _import(mods):
    import norse.torch as norse
    graph = to_nir(norse.SequentialState(*mods), torch.zeros(N_IN))
    return model_from_nir(graph, timesteps=T)


def test_integer_net_spikes_exactly_like_norse():
    rng = np.random.default_rng(0)
    mods = _net(rng, True)
    model = _import(mods)
    assert model.meta["import"]["mode"] == "integer"
    assert [layer.threshold.tolist()[0] for layer in model.layers] == [3, 2]   # v > thr
    names = [layer.name for layer in model.layers]
    for _ in range(10):
        frames = (rng.random((T, N_IN)) < 0.5).astype(np.int64)
        want = _norse_run(mods, frames)
        r = run(model, BinnedEvents.from_frames(frames.reshape(T, N_IN, 1, 1)),
                backend="numpy")
        for name, k in zip(names, sorted(want)):
            np.testing.assert_array_equal(r.spikes[name].reshape(T, -1), want[k], err_msg=name)


def test_float_net_predicts_like_norse():
    rng = np.random.default_rng(1)
    mods = _net(rng, False)
    model = _import(mods)
    assert model.meta["import"]["mode"] == "float"
    n, agree = 200, 0
    for _ in range(n):
        frames = (rng.random((T, N_IN)) < 0.5).astype(np.int64)
        want = _norse_run(mods, frames)
        scores = want[max(want)].sum(axis=0)
        got = run(model, BinnedEvents.from_frames(frames.reshape(T, N_IN, 1, 1)),
                  backend="numpy").prediction
        agree += int(got == int(np.argmax(scores)))
    assert agree >= 0.99 * n, agree

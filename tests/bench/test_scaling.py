"""bench.scaling's pieces on small inputs: the link bytes decode back to the spikes, the
per-layer work matches a plain count, the threshold calibration reaches its target and
the board split keeps every part inside its budget."""

import numpy as np
import pytest

from bench import scaling as sc
from boards import protocol as pr
from boards.platforms import get_board
from sim.geometry import END_STEP, SPIKE
from sim.events import BinnedEvents
from sim.randmodel import model_from_spec, random_binned
from sim.reference import run


def test_link_bytes_decode_to_the_spikes():
    rng = np.random.default_rng(0)
    T, C, H, W = 3, 5, 4, 6
    frames = (rng.random((T, C, H, W)) < 0.3).astype(np.int64)
    nbytes, nwords = sc.link_bytes(frames)
    assert nwords == int(frames.sum()) + T + 1             # spikes, end-of-steps, end
    data = pr.words_to_frames(pr.sample_words(
        BinnedEvents.from_frames(frames.reshape(T, 1, C * H, W)), 0))
    assert len(data) == nbytes
    parser = pr.Parser(pr.HOST_TYPES)
    words = [w for f in parser.feed(data) for w in f.words]
    assert parser.bad_frames == 0 and len(words) == nwords
    got = np.zeros_like(frames)
    k = 0
    for w in words:
        kind, fields = pr.decode_word(w)
        if kind == SPIKE:
            p, y, x = fields
            got[k, y // H, y % H, x] += 1
        elif kind == END_STEP:
            k += 1
    assert k == T and np.array_equal(got, frames)
    with pytest.raises(ValueError, match="row field"):
        sc.link_bytes(np.zeros((1, 1 << 10, 1 << 5, 1), dtype=np.int64))


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    spec = [("conv2d", 8, 3, 1, 1), ("sumpool2d", 2), ("conv2d", 16, 3, 1, 1),
            ("linear", 6)]
    model = model_from_spec(spec, rng, input_shape=(2, 8, 8), timesteps=4)
    binned = random_binned(rng, (2, 8, 8), 4, density=0.3)
    rates = sc.calibrate(model, binned, 0.2, iters=14)
    return model, binned, rates, run(model, binned, record=True)


def test_calibrate_reaches_the_target(small):
    model, binned, rates, res = small
    for ly in model.layers:
        got = res.spike_count[ly.name] / (4 * ly.n_out)
        assert rates[ly.name] == pytest.approx(got)      # the whole net fires as tuned
    # the hidden convolutions have many thresholds to choose from
    assert abs(rates["conv1"] - 0.2) < 0.05 and abs(rates["conv3"] - 0.2) < 0.05


def test_layer_figures_against_a_plain_count(small):
    model, binned, _, res = small
    rows = sc.layer_figures(model, binned, res, lanes=4)
    conv = model.layers[0]
    x = np.zeros((4, 128), dtype=np.int64)
    steps = np.repeat(np.arange(4), np.diff(binned.step_ptr))
    x[steps, binned.src] = binned.count
    x = x.reshape(4, 2, 8, 8)
    words = 0
    for k, c, y, xx in zip(*np.nonzero(x)):
        ny = sum(1 for oy in range(8) if 0 <= y + 1 - oy < 3)
        nx = sum(1 for ox in range(8) if 0 <= xx + 1 - ox < 3)
        words += x[k, c, y, xx] * ny * nx * 2             # G = 8 channels / 4 lanes
    r = rows[0]
    assert r["update_words_per_step"] == pytest.approx(words / 4)
    assert r["sweep_words_per_step"] == 64 * 2
    assert r["synops_per_step"] == pytest.approx(res.synops["conv1"] / 4)
    assert r["weight_bytes"] == conv.weights.size and r["state_bytes"] == conv.n_out * 2
    assert r["slab_bytes"] == 8 * 9
    assert r["active_inputs_per_step"] == pytest.approx(
        np.mean([(x[k].reshape(2, -1).sum(1) > 0).sum() for k in range(4)]))


def test_split_parts_fit_and_links_carry_every_spike(small, monkeypatch):
    model, binned, _, res = small
    rows = sc.layer_figures(model, binned, res, lanes=4)
    board = get_board("arty_a7_100")
    # a budget of a few hundred bytes forces splits
    monkeypatch.setattr(sc, "BRAM_BUDGET", 700 / (board.capacity.bram36 * sc.BRAM36_BITS / 8))
    d = sc.split_design(model, binned, res, rows, board, compute_cycles=1000)
    budget = d["budget_bytes"]
    assert budget == pytest.approx(700)
    names = [n for p in d["parts"] for n in p["layers"]]
    assert names == [ly.name for ly in model.layers]
    for p in d["parts"]:
        assert p["bytes_per_board"] <= budget
        assert p["boards"] == 1 or p["bytes"] > budget
    assert d["parts"][0]["layers"] == ["conv1", "sumpool2"]   # a pooling stays with its conv
    for link in d["links"]:
        assert link["words"] == res.spike_count[link["from"]] + 4 + 1
    assert d["boards"] == sum(p["boards"] for p in d["parts"])

"""Data sets: deterministic under a seed, in range, documented splits, no downloads."""

import numpy as np
import pytest

from quant.data import GESTURE_CLASSES, DataError, digits_events, gesture_sample, load_dataset
from sim.events import EVENT_DTYPE, bin_events


def _check_events(ev, shape, duration):
    P, H, W = shape
    assert ev.dtype == EVENT_DTYPE
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["t"].min() >= 0 and ev["t"].max() < duration
    assert ev["x"].min() >= 0 and ev["x"].max() < W
    assert ev["y"].min() >= 0 and ev["y"].max() < H
    assert set(np.unique(ev["p"]).tolist()) <= set(range(P))


def test_digits_split_and_determinism():
    tr = load_dataset("digits", "train", seed=3, limit=50)
    tr2 = load_dataset("digits", "train", seed=3, limit=50)
    tr4 = load_dataset("digits", "train", seed=4, limit=50)
    full_te = load_dataset("digits", "test", seed=3)
    assert len(full_te) == 360 and full_te.n_classes == 10 and full_te.shape == (1, 8, 8)
    assert np.array_equal(tr.labels, tr2.labels) and np.array_equal(tr.labels, tr4.labels)
    differs = False
    for i in range(len(tr)):
        a, la = tr.sample(i)
        b, _ = tr2.sample(i)
        c, _ = tr4.sample(i)
        assert np.array_equal(a, b)
        differs |= not np.array_equal(a, c)
        _check_events(a, (1, 8, 8), 16 * 1000)
        assert 0 <= la <= 9
    assert differs
    from sklearn.datasets import load_digits
    target = load_digits().target
    assert np.array_equal(full_te.labels, target[::5])


def test_digits_codings_follow_the_image():
    img = np.zeros((8, 8), dtype=int)
    img[2, 3], img[5, 5], img[0, 0] = 16, 8, 2
    rng = np.random.default_rng(0)
    ev = digits_events(img, rng, timesteps=400, dt_us=1000, encoding="rate")
    counts = np.zeros((8, 8), dtype=int)
    np.add.at(counts, (ev["y"], ev["x"]), 1)
    assert counts[2, 3] == 400                        # intensity 16 fires every step
    assert 150 < counts[5, 5] < 250                   # probability 1/2
    assert counts.sum() == counts[2, 3] + counts[5, 5] + counts[0, 0]
    assert np.all(ev["t"] % 1000 == 0)
    lat = digits_events(img, rng, timesteps=16, dt_us=1000, encoding="latency")
    assert len(lat) == 2                              # pixels below 4 stay silent
    t = {(int(e["y"]), int(e["x"])): int(e["t"]) for e in lat}
    assert t[(2, 3)] == 0 and t[(5, 5)] == round(0.5 * 15) * 1000
    with pytest.raises(DataError, match="unknown digits encoding"):
        digits_events(img, rng, timesteps=4, dt_us=1, encoding="phase")


def test_gesture_determinism_ranges_and_motion():
    a = load_dataset("gesture_synth", "train", seed=1, limit=16, timesteps=8, dt_us=5000)
    b = load_dataset("gesture_synth", "train", seed=1, limit=16, timesteps=8, dt_us=5000)
    t = load_dataset("gesture_synth", "test", seed=1, limit=16, timesteps=8, dt_us=5000)
    assert a.shape == (2, 128, 128) and a.n_classes == len(GESTURE_CLASSES)
    assert np.bincount(a.labels, minlength=8).tolist() == [2] * 8
    for i in range(16):
        ea, la = a.sample(i)
        eb, _ = b.sample(i)
        et, _ = t.sample(i)
        assert np.array_equal(ea, eb)
        assert not np.array_equal(ea, et)               # test samples are other draws
        _check_events(ea, (2, 128, 128), 8 * 5000)
        assert len(ea) > 200
    # the motion is in the events: leading edges are ON, trailing edges OFF
    for seed in range(3):
        ev = {c: gesture_sample(np.random.default_rng([seed, j]), j, timesteps=8, dt_us=5000,
                                noise=0)
              for j, c in enumerate(GESTURE_CLASSES)}
        on = {c: e[e["p"] == 1] for c, e in ev.items()}
        off = {c: e[e["p"] == 0] for c, e in ev.items()}
        assert on["right"]["x"].mean() > off["right"]["x"].mean() + 5
        assert on["left"]["x"].mean() < off["left"]["x"].mean() - 5
        assert on["up"]["y"].mean() < off["up"]["y"].mean() - 5
        assert on["down"]["y"].mean() > off["down"]["y"].mean() + 5
        assert len(on["grow"]) > 3 * len(off["grow"])
        assert len(off["shrink"]) > 3 * len(on["shrink"])
    binned = a.bin(8, 5000)
    x, y = binned.frames([0, 3])
    for j, i in enumerate([0, 3]):
        ref = bin_events(a.sample(i)[0], (2, 128, 128), 8, 5000)
        assert np.array_equal(x[:, j], ref.to_frames())
        assert binned.binned(i).n_dropped == 0


def _write_nmnist_bin(path, ev):
    raw = np.zeros((len(ev), 5), dtype=np.uint8)
    raw[:, 0] = ev["x"]
    raw[:, 1] = ev["y"]
    raw[:, 2] = (ev["p"].astype(np.uint32) << 7) | ((ev["t"] >> 16) & 0x7F)
    raw[:, 3] = (ev["t"] >> 8) & 0xFF
    raw[:, 4] = ev["t"] & 0xFF
    path.write_bytes(raw.tobytes())


def test_tonic_on_disk_never_downloads(tmp_path):
    pytest.importorskip("tonic")
    with pytest.raises(DataError, match="needs --root"):
        load_dataset("nmnist", "test")
    with pytest.raises(DataError, match="data directory not found"):
        load_dataset("nmnist", "test", root=tmp_path / "nope")
    with pytest.raises(DataError, match="never downloads"):
        load_dataset("dvs_gesture", "train", root=tmp_path)
    assert list(tmp_path.iterdir()) == []                 # nothing was fetched or created
    # a tiny N-MNIST copy in tonic's layout
    rng = np.random.default_rng(0)
    written = {}
    for label in (3, 7):
        d = tmp_path / "NMNIST" / "Test" / str(label)
        d.mkdir(parents=True)
        ev = np.zeros(50, dtype=EVENT_DTYPE)
        ev["x"], ev["y"] = rng.integers(0, 34, 50), rng.integers(0, 34, 50)
        ev["p"], ev["t"] = rng.integers(0, 2, 50), np.sort(rng.integers(0, 90_000, 50))
        _write_nmnist_bin(d / "00001.bin", ev)
        written[label] = ev
    es = load_dataset("nmnist", "test", root=tmp_path)
    assert es.shape == (2, 34, 34) and sorted(es.labels.tolist()) == [3, 7]
    for i in range(len(es)):
        ev, label = es.sample(i)
        want = written[label]
        for f in "xypt":
            assert np.array_equal(ev[f], want[f])
    x, y = es.bin(6, 15_000).frames(range(len(es)))
    assert x.shape == (6, 2, 2, 34, 34) and x.sum() > 0


def test_unknown_names():
    with pytest.raises(DataError, match="unknown data set 'mnist'"):
        load_dataset("mnist", "train")
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_dataset("digits", "val")


def test_temporal_pairs_show_the_same_frames_in_another_order():
    from sim.datasets import _temporal_frames
    for seed in range(20):
        for a, b in (("rotate_cw", "rotate_ccw"), ("move_right", "move_left"), ("aba", "aab")):
            fa, ga = _temporal_frames(np.random.default_rng(seed), a, 16)
            fb, gb = _temporal_frames(np.random.default_rng(seed), b, 16)
            assert ga == gb and len(fa) == len(fb)
            assert sorted(f.tobytes() for f in fa) == sorted(f.tobytes() for f in fb)
            assert [f.tobytes() for f in fa] != [f.tobytes() for f in fb]   # order differs
            if a != "aba":
                assert all(np.array_equal(x, y) for x, y in zip(fa, fb[::-1]))
            assert all(f.any() for f in fa)


def test_temporal_synth_samples():
    from sim.datasets import TEMPORAL_CLASSES, temporal_sample
    tr = load_dataset("temporal_synth", "train", limit=24)
    te = load_dataset("temporal_synth", "test", limit=12)
    assert tr.shape == (2, 16, 16) and tr.n_classes == len(TEMPORAL_CLASSES) == 6
    assert np.bincount(tr.labels).tolist() == [4] * 6
    again = load_dataset("temporal_synth", "train", limit=24)
    for i in range(24):
        ev, label = tr.sample(i)
        assert np.array_equal(ev, again.sample(i)[0])
        assert ev.dtype == EVENT_DTYPE and ev["t"][0] == 0 and (np.diff(ev["t"]) >= 0).all()
        b = bin_events(ev, (2, 16, 16), 16, 1000, 1)
        assert b.n_dropped == 0
        frames = b.to_frames()
        # flashes: ON events in one step, OFF events at the same pixels one step later
        on = frames[:, 1].reshape(16, -1).sum(1)
        assert (on > 3).sum() in (3, 4)
    assert not np.array_equal(tr.sample(0)[0], te.sample(0)[0])
    with pytest.raises(DataError, match="at least 14 time steps"):
        temporal_sample(np.random.default_rng(0), 0, timesteps=10)

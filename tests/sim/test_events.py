"""Input events: binning and clipping against the oracle, range checks, readers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.events import (EVENT_DTYPE, BinnedEvents, EventError, bin_events, load_events,
                        normalize_events, save_events)

from . import oracle


def events(rows, dtype=EVENT_DTYPE):
    """Structured array from ``(x, y, p, t)`` rows."""
    arr = np.zeros(len(rows), dtype=dtype)
    for i, (x, y, p, t) in enumerate(rows):
        arr[i]["x"], arr[i]["y"], arr[i]["p"], arr[i]["t"] = x, y, p, t
    return arr


def as_steps(binned):
    """``BinnedEvents`` -> the oracle's list of ``{(p, y, x): count}``."""
    steps = []
    for k in range(binned.timesteps):
        p, y, x, c = binned.coords(k)
        steps.append({(int(a), int(b), int(d)): int(n) for a, b, d, n in zip(p, y, x, c)})
    return steps


# -- binning against the oracle -----------------------------------------------------------

@st.composite
def samples(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    T = draw(st.integers(1, 6))
    dt = draw(st.sampled_from([1, 7, 1000, 33_333]))
    clip = draw(st.integers(1, 4))
    t0 = draw(st.sampled_from([0, 12_345, 1_700_000_000_000_000]))   # absolute timestamps
    n = draw(st.integers(0, 80))
    gaps = draw(st.lists(st.integers(0, 2 * dt), min_size=n, max_size=n))
    P, H, W = shape
    rows = []
    t = t0
    for g in gaps:
        t += g
        rows.append((draw(st.integers(0, W - 1)), draw(st.integers(0, H - 1)),
                     draw(st.integers(0, P - 1)), t))
    return events(rows), shape, T, dt, clip


def assert_binned_like_oracle(binned, ev, shape, T, dt, clip):
    want, dropped, clipped = oracle.bin_events(ev, shape, T, dt, clip)
    assert binned.timesteps == T and tuple(binned.shape) == tuple(shape)
    assert as_steps(binned) == want
    assert binned.n_events == len(ev)
    assert binned.n_dropped == dropped
    assert binned.n_clipped == clipped
    assert binned.n_spikes == sum(sum(s.values()) for s in want)
    # the stream order: distinct sources, ascending flat index, inside each step
    for k in range(T):
        src, count = binned.step(k)
        assert (np.diff(src) > 0).all()
        assert ((count >= 1) & (count <= clip)).all()
    # dense frames agree too
    frames = binned.to_frames()
    assert oracle.frames_to_steps(frames.tolist()) == want


@settings(max_examples=100)
@given(samples())
def test_binning_matches_oracle(sample):
    ev, shape, T, dt, clip = sample
    binned = bin_events(ev, shape, T, dt, clip)
    assert_binned_like_oracle(binned, ev, shape, T, dt, clip)


# -- hand-computed binning -------------------------------------------------------------------

def test_t0_is_first_event_and_late_events_dropped():
    base = 1_700_000_000_123_456                  # Unix microseconds
    ev = events([(0, 0, 0, base + 0),            # step 0
                 (1, 0, 0, base + 999),          # step 0
                 (1, 0, 0, base + 1000),         # step 1
                 (1, 0, 1, base + 1999),         # step 1
                 (0, 1, 0, base + 2000),         # step 2 >= T: dropped
                 (1, 1, 1, base + 10**9)])       # dropped
    b = bin_events(ev, (2, 2, 2), timesteps=2, dt_us=1000)
    assert as_steps(b) == [{(0, 0, 0): 1, (0, 0, 1): 1}, {(0, 0, 1): 1, (1, 0, 1): 1}]
    assert (b.n_events, b.n_dropped, b.n_clipped) == (6, 2, 0)
    # flat source index (p * H + y) * W + x, ascending
    assert b.step(1)[0].tolist() == [1, 5]


def test_count_clipping():
    ev = events([(2, 1, 0, t) for t in range(5)] + [(0, 0, 1, 4)] +
                [(2, 1, 0, 1000 + t) for t in range(2)])
    b = bin_events(ev, (2, 2, 3), timesteps=2, dt_us=1000, count_clip=3)
    assert as_steps(b) == [{(0, 1, 2): 3, (1, 0, 0): 1}, {(0, 1, 2): 2}]
    assert b.n_clipped == 2 and b.n_spikes == 6
    b1 = bin_events(ev, (2, 2, 3), timesteps=2, dt_us=1000, count_clip=1)
    assert as_steps(b1) == [{(0, 1, 2): 1, (1, 0, 0): 1}, {(0, 1, 2): 1}]
    assert b1.n_clipped == 5


def test_empty_sample():
    b = bin_events(np.zeros(0, dtype=EVENT_DTYPE), (2, 3, 3), timesteps=4, dt_us=10)
    assert as_steps(b) == [{}] * 4
    assert b.n_spikes == 0 and b.to_frames().shape == (4, 2, 3, 3)


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("row,field", [((4, 0, 0), "x"), ((0, 3, 0), "y"), ((0, 0, 2), "p"),
                                       ((-1, 0, 0), "x"), ((0, -1, 0), "y"),
                                       ((0, 0, -1), "p")])
def test_out_of_range(row, field):
    ev = events([(0, 0, 0, 0), (*row, 5)])
    with pytest.raises(EventError, match=rf"event 1: {field}=-?\d+ is outside"):
        bin_events(ev, (2, 3, 4), timesteps=2, dt_us=10, where="sample.npz")
    with pytest.raises(EventError, match="sample.npz"):
        bin_events(ev, (2, 3, 4), timesteps=2, dt_us=10, where="sample.npz")


def test_out_of_range_on_a_dropped_event_is_still_an_error():
    ev = events([(0, 0, 0, 0), (9, 0, 0, 10**6)])          # step 1000 >> T, but x is bad
    with pytest.raises(EventError, match="x=9"):
        bin_events(ev, (1, 2, 2), timesteps=2, dt_us=10)
    with pytest.raises(oracle.OracleError):
        oracle.bin_events(ev, (1, 2, 2), 2, 10, 1)


def test_unsorted():
    ev = events([(0, 0, 0, 5), (0, 0, 0, 7), (0, 0, 0, 6)])
    with pytest.raises(EventError, match=r"not sorted.*event 2"):
        bin_events(ev, (1, 1, 1), timesteps=2, dt_us=10)
    # equal timestamps are sorted
    bin_events(events([(0, 0, 0, 5), (0, 0, 0, 5)]), (1, 1, 1), timesteps=1, dt_us=10)


def test_missing_field_and_bad_values():
    arr = np.zeros(2, dtype=[("x", "i2"), ("y", "i2"), ("t", "i8")])
    with pytest.raises(EventError, match="missing field 'p'"):
        bin_events(arr, (1, 1, 1), 1, 10)
    with pytest.raises(EventError, match="structured"):
        bin_events(np.zeros((3, 4)), (1, 1, 1), 1, 10)
    arr = np.zeros(2, dtype=[("x", "f4"), ("y", "i2"), ("p", "i1"), ("t", "i8")])
    arr["x"] = [0, 0.5]
    with pytest.raises(EventError, match="'x'.*non-integer"):
        bin_events(arr, (1, 1, 1), 1, 10)
    arr = np.zeros(1, dtype=[("x", "i2"), ("y", "i2"), ("p", "i1"), ("t", "u8")])
    arr["t"] = 2**63 + 5
    with pytest.raises(EventError, match="'t'"):
        bin_events(arr, (1, 1, 1), 1, 10)
    arr = np.zeros(1, dtype=[("x", "U2"), ("y", "i2"), ("p", "i1"), ("t", "i8")])
    with pytest.raises(EventError, match="'x'"):
        bin_events(arr, (1, 1, 1), 1, 10)


# -- fields by name, any order and dtype ---------------------------------------------------

ODD_DTYPES = [
    np.dtype([("t", "<u8"), ("p", "?"), ("x", "<u2"), ("y", "<u2")]),      # bool polarity
    np.dtype([("y", "<i4"), ("x", "<i4"), ("t", "<i8"), ("p", "<i4")]),
    np.dtype([("p", "u1"), ("t", ">i8"), ("y", ">i2"), ("x", "<u4"), ("extra", "f8")]),
    np.dtype([("x", "<f8"), ("y", "<f8"), ("p", "<f4"), ("t", "<f8")]),   # integral floats
]


@pytest.mark.parametrize("dtype", ODD_DTYPES, ids=["bool_p_uint64_t", "reordered", "mixed",
                                                   "floats"])
def test_fields_read_by_name(dtype):
    rng = np.random.default_rng(5)
    n = 300
    rows = list(zip(rng.integers(0, 6, n), rng.integers(0, 5, n), rng.integers(0, 2, n),
                    np.sort(rng.integers(0, 9000, n)) + 1_600_000_000_000_000))
    ref = bin_events(events(rows), (2, 5, 6), timesteps=6, dt_us=1000, count_clip=2)
    odd = events(rows, dtype)
    got = bin_events(odd, (2, 5, 6), timesteps=6, dt_us=1000, count_clip=2)
    assert as_steps(got) == as_steps(ref)
    assert (got.n_dropped, got.n_clipped) == (ref.n_dropped, ref.n_clipped)
    assert_binned_like_oracle(got, odd, (2, 5, 6), 6, 1000, 2)


# -- files -----------------------------------------------------------------------------------

def _sample(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return events(list(zip(rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 2, n),
                           np.sort(rng.integers(0, 5000, n)))))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    ev = _sample()
    path = tmp_path / f"s{suffix}"
    save_events(path, ev, label=7)
    got, label = load_events(path)
    assert got.dtype == EVENT_DTYPE
    for f in "xypt":
        assert (got[f] == ev[f]).all()
    assert label == (7 if suffix == ".npz" else None)


def test_load_odd_dtype_files(tmp_path):
    ev = _sample()
    odd = events([tuple(int(e[f]) for f in "xypt") for e in ev], ODD_DTYPES[0])
    np.save(tmp_path / "a.npy", odd)
    np.savez(tmp_path / "b.npz", whatever=odd)                  # the only array
    np.savez(tmp_path / "c.npz", events=odd, label=np.int64(3), other=np.zeros(2))
    for name in ("a.npy", "b.npz", "c.npz"):
        got, label = load_events(tmp_path / name)
        for f in "xypt":
            assert (got[f].astype(np.int64) == ev[f].astype(np.int64)).all(), (name, f)
    assert load_events(tmp_path / "c.npz")[1] == 3


def test_load_errors(tmp_path):
    with pytest.raises(EventError, match="nope.npy: file not found"):
        load_events(tmp_path / "nope.npy")
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(EventError, match=r"x.txt: unknown event file type"):
        load_events(tmp_path / "x.txt")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(EventError, match="bad.npy: cannot read"):
        load_events(tmp_path / "bad.npy")
    np.savez(tmp_path / "two.npz", a=_sample(), b=_sample())
    with pytest.raises(EventError, match="two.npz: no 'events' array"):
        load_events(tmp_path / "two.npz")
    np.save(tmp_path / "plain.npy", np.zeros((5, 4), dtype=np.int64))
    with pytest.raises(EventError, match="plain.npy: expected a structured array"):
        load_events(tmp_path / "plain.npy")
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(EventError, match="obj.npy"):
        load_events(tmp_path / "obj.npy")


def test_frames_round_trip():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 4, size=(5, 2, 3, 4)) * (rng.random((5, 2, 3, 4)) < 0.4)
    b = BinnedEvents.from_frames(frames)
    assert (b.to_frames() == frames).all()
    assert as_steps(b) == oracle.frames_to_steps(frames.tolist())
    assert b.n_spikes == frames.sum()


def _py_steps(t, dt_us):
    """Oracle: steps of sorted times in Python integers (no wrap-around)."""
    t0 = int(t[0])
    return [(int(v) - t0) // dt_us for v in t]


@pytest.mark.parametrize("t, dt_us", [
    ([0, 2 ** 62], 1),
    ([-2 ** 63, -1, 2 ** 63 - 1000], 1000),
    ([-2 ** 63, 2 ** 63 - 1], 1),
    ([-2 ** 63, -2 ** 63 + 999, -2 ** 63 + 1000, 0, 2 ** 63 - 1], 1000),
    ([-5, -5, -4, 2 ** 63 - 1], 2 ** 32 - 1),
])
def test_binning_is_exact_for_any_int64_span(t, dt_us):
    T = 3
    ev = np.zeros(len(t), dtype=EVENT_DTYPE)
    ev["t"] = np.array(t, dtype=np.int64)
    b = bin_events(ev, (1, 1, 1), T, dt_us, count_clip=8)
    want = _py_steps(t, dt_us)
    kept = [k for k in want if k < T]
    assert b.n_events == len(t)
    assert b.n_dropped == len(t) - len(kept)
    # every event is delivered, clipped or dropped: none is lost
    assert b.n_spikes + b.n_clipped + b.n_dropped == b.n_events
    frames = b.to_frames().reshape(T)
    assert frames.tolist() == [kept.count(k) for k in range(T)]


def test_binning_matches_python_integers_on_random_wide_spans():
    rng = np.random.default_rng(11)
    info = np.iinfo(np.int64)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        t = np.sort(rng.integers(info.min, info.max, n, dtype=np.int64, endpoint=True))
        dt_us = int(rng.choice([1, 1000, 2 ** 31, 2 ** 32 - 1]))
        T = int(rng.integers(1, 6))
        ev = np.zeros(n, dtype=EVENT_DTYPE)
        ev["t"] = t
        b = bin_events(ev, (1, 1, 1), T, dt_us, count_clip=n)
        want = [k for k in _py_steps(t, dt_us) if k < T]
        assert b.to_frames().reshape(T).tolist() == [want.count(k) for k in range(T)]
        assert b.n_dropped == n - len(want)


def test_sorted_check_does_not_wrap():
    ev = np.zeros(2, dtype=EVENT_DTYPE)
    ev["t"] = [2 ** 63 - 1, -2 ** 63]            # t[1] - t[0] wraps to +1 in int64
    with pytest.raises(EventError, match="not sorted"):
        bin_events(ev, (1, 1, 1), 2, 1)
    ev["t"] = [-2 ** 63, 2 ** 63 - 1]            # the difference wraps to -1: sorted
    assert bin_events(ev, (1, 1, 1), 2, 1).n_dropped == 1


@pytest.mark.parametrize("arr, needle", [
    (np.zeros((), dtype=EVENT_DTYPE), "expected a 1-D structured array"),
    (np.zeros((2, 2), dtype=EVENT_DTYPE), "got 2 dimensions"),
    (np.zeros(2, dtype=[("x", np.int16, (2,)), ("y", np.int16), ("p", np.int8),
                        ("t", np.int64)]), "field 'x' is a sub-array"),
])
def test_malformed_event_arrays(arr, needle):
    with pytest.raises(EventError, match=needle):
        normalize_events(arr, "f.npy")


@pytest.mark.parametrize("key, value", [("timesteps", 0), ("dt_us", True), ("dt_us", 1.5),
                                        ("count_clip", -1)])
def test_bin_events_checks_its_parameters(key, value):
    kw = {"timesteps": 2, "dt_us": 10, "count_clip": 1, key: value}
    with pytest.raises(EventError, match=key):
        bin_events(np.zeros(1, dtype=EVENT_DTYPE), (1, 1, 1), kw["timesteps"], kw["dt_us"],
                   kw["count_clip"])

"""Event data sets for training and evaluation; nothing is downloaded at run time.

Every data set yields tonic-style samples: a structured array of
:data:`sim.events.EVENT_DTYPE` (fields ``x``, ``y``, ``p``, ``t`` in microseconds) and
an integer label. Samples are binned with :func:`sim.events.bin_events` (the
contract's binning, the same the reference and the host tool use), so a model trained
here sees exactly the input spikes the hardware will see.

``digits`` (real data)
    scikit-learn's 1,797 handwritten digits (8x8 pixels, intensities 0..16, bundled
    with scikit-learn) turned into events on a ``1 x 8 x 8`` sensor with one polarity.
    Two codings, both seeded per sample (``numpy.random.default_rng([seed, index])``):

    - ``rate`` (default): in each of ``timesteps`` steps of ``dt_us`` a pixel of
      intensity ``v`` emits one event with probability ``v / 16``, timestamped at the
      start of the step (``t = k * dt_us``);
    - ``latency``: a pixel with ``v >= 4`` emits one event at step
      ``round((1 - v / 16) * (timesteps - 1))`` (bright pixels first).

    Fixed split (independent of the seed): images whose index is a multiple of 5 are
    the test set (360 images), the others the training set (1,437).

``gesture_synth`` (procedural stand-in for DVS128 Gesture)
    A moving convex shape (square, triangle or bar, random size, position, angle)
    seen by a ``2 x 128 x 128`` event camera. Eight motion classes: right, left, up,
    down, rotate clockwise, rotate counter-clockwise, grow, shrink. The shape is
    rendered at ``4 * timesteps`` instants over the sample; every pixel that turns on
    emits an ON event (``p = 1``), every pixel that turns off an OFF event (``p = 0``),
    with a uniform random time inside the sub-interval; uniform background noise
    events are added. Training sample ``i`` uses ``default_rng([seed, 0, i])``, test
    sample ``i`` ``default_rng([seed, 1, i])``: the split is fixed by construction
    (default 800 training and 320 test samples, balanced classes).

``temporal_synth`` (procedural; the order of the frames is the class)
    Shapes flashed on a ``2 x 16 x 16`` sensor, one frame at a time: a frame at step
    ``k`` emits ON events (``p = 1``) at every pixel of the shape during step ``k``
    and OFF events (``p = 0``) at the same pixels during step ``k + 1`` (a flash, as an
    event camera sees it), so no single frame tells where the shape goes next. Six
    classes in three pairs; within a pair the two classes show the same frames in
    a different order (:data:`TEMPORAL_CLASSES`):

    - ``rotate_cw`` / ``rotate_ccw``: a bar (random centre, length, start angle) at
      four angles ``a0 + j * da`` (``da`` 25-40 degrees), or the same four frames in
      reverse order;
    - ``move_right`` / ``move_left``: a small square at four positions 3-4 pixels
      apart along a row, or the same frames reversed;
    - ``aba`` / ``aab``: a small square (A) and a square ring around it (B) at one
      random place: A, B, A (A reappears after a gap) or A, A, B.

    Frames are ``g`` steps apart (``g`` 3-4 for rotation and motion, 4-5 for the
    square and the ring), the first at a random step; every event is kept with
    probability 0.9 and a few uniform noise events are added; one noise event at
    ``t = 0`` anchors the binning. Training sample ``i`` uses
    ``default_rng([seed, 0, i])``, test sample ``i`` ``default_rng([seed, 1, i])``
    (default 2,400 training and 480 test samples, balanced classes).

``nmnist``, ``dvs_gesture`` (real data already on disk)
    tonic's ``NMNIST`` and ``DVSGesture`` classes reading an existing copy under
    ``root`` (tonic's layout: ``root/NMNIST/...``, ``root/DVSGesture/...``). A missing
    copy is an error (:class:`DataError`), never a download. tonic is optional.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.events import EVENT_DTYPE, bin_events

__all__ = ["DataError", "EventSet", "BinnedSet", "DATASETS", "GESTURE_CLASSES",
           "TEMPORAL_CLASSES", "load_dataset", "digits_events", "gesture_sample",
           "temporal_sample", "default_input"]


class DataError(ValueError):
    """A data set cannot be loaded (one line, names the path or setting)."""


#: Motion classes of ``gesture_synth``, in label order.
GESTURE_CLASSES = ("right", "left", "up", "down", "rotate_cw", "rotate_ccw", "grow", "shrink")

#: Classes of ``temporal_synth``, in label order (pairs with the same frames).
TEMPORAL_CLASSES = ("rotate_cw", "rotate_ccw", "move_right", "move_left", "aba", "aab")

#: Input settings each data set is trained with unless told otherwise.
_DEFAULT_INPUT = {
    "digits": dict(timesteps=16, dt_us=1000, count_clip=1),
    "gesture_synth": dict(timesteps=16, dt_us=10_000, count_clip=1),
    "temporal_synth": dict(timesteps=16, dt_us=1000, count_clip=1),
    "nmnist": dict(timesteps=20, dt_us=15_000, count_clip=1),
    "dvs_gesture": dict(timesteps=20, dt_us=50_000, count_clip=1),
}


def default_input(name):
    """Default ``timesteps``, ``dt_us`` and ``count_clip`` of data set ``name``."""
    if name not in _DEFAULT_INPUT:
        raise DataError(f"unknown data set {name!r}, expected one of {', '.join(DATASETS)}")
    return dict(_DEFAULT_INPUT[name])


@dataclass
class EventSet:
    """Samples of one split of a data set.

    ``sample(i)`` returns ``(events, label)``; events are read lazily for data sets
    on disk and kept in memory for generated ones.
    """
    name: str
    split: str
    shape: tuple               # (P, H, W)
    n_classes: int
    labels: np.ndarray
    info: dict = field(default_factory=dict)
    _events: list | None = None
    _reader: object = None

    def __len__(self):
        return len(self.labels)

    def sample(self, i):
        if self._events is not None:
            return self._events[i], int(self.labels[i])
        return self._reader(i), int(self.labels[i])

    def bin(self, timesteps, dt_us, count_clip=1, cache=None):
        """The samples binned with the contract's rules (:class:`BinnedSet`)."""
        if cache is None:
            cache = self._events is not None
        return BinnedSet(self, int(timesteps), int(dt_us), int(count_clip), cache)


class BinnedSet:
    """A binned view of an :class:`EventSet`, batched as dense torch-ready arrays."""

    def __init__(self, events, timesteps, dt_us, count_clip=1, cache=True):
        self.events, self.timesteps, self.dt_us, self.count_clip = \
            events, timesteps, dt_us, count_clip
        self.shape = events.shape
        self.labels = events.labels
        self._cache = [self._bin(i) for i in range(len(events))] if cache else None

    def __len__(self):
        return len(self.labels)

    def _bin(self, i):
        ev, _ = self.events.sample(i)
        return bin_events(ev, self.shape, self.timesteps, self.dt_us, self.count_clip,
                          where=f"{self.events.name}[{i}]")

    def binned(self, i):
        """:class:`sim.events.BinnedEvents` of sample ``i``."""
        return self._cache[i] if self._cache is not None else self._bin(i)

    def frames(self, idx):
        """Dense counts ``(T, B, P, H, W)`` (uint8) and labels ``(B,)`` of samples ``idx``."""
        idx = list(idx)
        T = self.timesteps
        n = int(np.prod(self.shape))
        out = np.zeros((T, len(idx), n), dtype=np.uint8)
        for j, i in enumerate(idx):
            b = self.binned(i)
            steps = np.repeat(np.arange(T), np.diff(b.step_ptr))
            out[steps, j, b.src] = b.count
        return out.reshape((T, len(idx)) + tuple(self.shape)), self.labels[idx]

    def batches(self, batch_size, shuffle=False, rng=None):
        """Yield ``(frames, labels)`` batches; ``shuffle`` draws the order from ``rng``."""
        order = np.arange(len(self))
        if shuffle:
            order = (rng or np.random.default_rng()).permutation(len(self))
        for a in range(0, len(order), batch_size):
            yield self.frames(order[a:a + batch_size])


# -- digits -------------------------------------------------------------------------------

def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn") from None
    d = load_digits()
    return d.images.astype(np.int64), d.target.astype(np.int64)


def digits_events(image, rng, *, timesteps, dt_us, encoding="rate"):
    """One 8x8 digit image (intensities 0..16) as a sorted event array.

    See the module docstring for the ``rate`` and ``latency`` codings.
    """
    image = np.asarray(image)
    H, W = image.shape
    if encoding == "rate":
        fire = rng.random((timesteps, H, W)) < image[None] / 16.0
        k, y, x = np.nonzero(fire)
    elif encoding == "latency":
        y, x = np.nonzero(image >= 4)
        k = np.rint((1 - image[y, x] / 16.0) * (timesteps - 1)).astype(np.int64)
        order = np.lexsort((x, y, k))
        k, y, x = k[order], y[order], x[order]
    else:
        raise DataError(f"unknown digits encoding {encoding!r}, expected 'rate' or 'latency'")
    ev = np.zeros(len(k), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, 0, k * dt_us
    return ev


def _digits(split, seed, timesteps, dt_us, encoding="rate", limit=None, **_):
    images, labels = _load_digits()
    idx = np.arange(len(labels))
    idx = idx[idx % 5 == 0] if split == "test" else idx[idx % 5 != 0]
    if limit:
        idx = idx[:limit]
    events = [digits_events(images[i], np.random.default_rng([seed, int(i)]),
                            timesteps=timesteps, dt_us=dt_us, encoding=encoding) for i in idx]
    return EventSet("digits", split, (1, 8, 8), 10, labels[idx],
                    info={"encoding": encoding, "seed": seed, "indices": "index % 5 == 0 is test",
                          "source": "sklearn.datasets.load_digits"},
                    _events=events)


# -- procedural gestures ----------------------------------------------------------------

_SHAPES = ("square", "triangle", "bar")


def _polygon(kind):
    if kind == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if kind == "triangle":
        a = np.deg2rad([90, 210, 330])
        return np.stack([np.cos(a), np.sin(a)], axis=1) * 1.2
    return np.array([[-1.4, -0.45], [1.4, -0.45], [1.4, 0.45], [-1.4, 0.45]])


def _render(poly, cx, cy, size, angle, ys, xs):
    """Boolean mask of a convex polygon (vertices counter-clockwise) on the pixel grid."""
    c, s = math.cos(angle), math.sin(angle)
    pts = poly @ np.array([[c, s], [-s, c]]) * size + np.array([cx, cy])
    mask = np.ones(ys.shape, dtype=bool)
    n = len(pts)
    for i in range(n):
        (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
        mask &= (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0) >= 0
    return mask


def gesture_sample(rng, label, *, timesteps=16, dt_us=10_000, size=128, noise=0.002,
                   subframes=4):
    """One procedural event-camera sample of motion class ``label``.

    Parameters
    ----------
    rng : numpy.random.Generator
    label : int
        Index into :data:`GESTURE_CLASSES`.
    timesteps, dt_us : int
        The sample lasts ``timesteps * dt_us`` microseconds.
    size : int
        Sensor width and height.
    noise : float
        Background events per pixel over the sample.
    subframes : int
        Renderings per time step.

    Returns
    -------
    structured ndarray of :data:`sim.events.EVENT_DTYPE`, sorted by ``t``.
    """
    kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
    poly = _polygon(kind)
    r = rng.uniform(0.09, 0.16) * size                     # half-size in pixels
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    a0 = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(0.15, 0.3) * size                   # translation over the sample
    turn = rng.uniform(1.0, 2.0) * np.pi / 2               # rotation over the sample
    grow = rng.uniform(1.4, 1.8)                           # scale factor over the sample
    n = timesteps * subframes
    dur = timesteps * dt_us
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    name = GESTURE_CLASSES[label]
    prev = None
    chunks = []
    for j in range(n + 1):
        f = j / n
        x, y, ang, sc = cx, cy, a0, r
        if name == "right":
            x = cx + (f - 0.5) * dist
        elif name == "left":
            x = cx - (f - 0.5) * dist
        elif name == "up":
            y = cy - (f - 0.5) * dist
        elif name == "down":
            y = cy + (f - 0.5) * dist
        elif name == "rotate_cw":
            ang = a0 + f * turn
        elif name == "rotate_ccw":
            ang = a0 - f * turn
        elif name == "grow":
            sc = r * grow ** (f - 0.5)
        else:
            sc = r * grow ** (0.5 - f)
        mask = _render(poly, x, y, sc, ang, ys, xs)
        if prev is not None:
            for pol, changed in ((1, mask & ~prev), (0, prev & ~mask)):
                yy, xx = np.nonzero(changed)
                t0 = (j - 1) * dur // n
                t = t0 + rng.integers(0, max(1, dur // n), len(yy))
                chunks.append((xx, yy, np.full(len(yy), pol), t))
        prev = mask
    n_noise = rng.poisson(noise * size * size)
    chunks.append((rng.integers(0, size, n_noise), rng.integers(0, size, n_noise),
                   rng.integers(0, 2, n_noise), rng.integers(0, dur, n_noise)))
    x, y, p, t = (np.concatenate([c[i] for c in chunks]) for i in range(4))
    ev = np.zeros(len(t), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, p, t
    ev = ev[np.argsort(ev["t"], kind="stable")]
    if len(ev) == 0 or ev["t"][0] != 0:
        # anchor the first step: the contract bins from the first event's timestamp
        first = np.zeros(1, dtype=EVENT_DTYPE)
        first["x"], first["y"] = rng.integers(0, size, 2)
        ev = np.concatenate([first, ev])
    return ev


def _gesture(split, seed, timesteps, dt_us, n_train=800, n_test=320, limit=None, **kw):
    n = n_train if split == "train" else n_test
    if limit:
        n = min(n, limit)
    sid = 0 if split == "train" else 1
    labels = np.arange(n) % len(GESTURE_CLASSES)
    events = [gesture_sample(np.random.default_rng([seed, sid, i]), int(labels[i]),
                             timesteps=timesteps, dt_us=dt_us, **kw) for i in range(n)]
    return EventSet("gesture_synth", split, (2, 128, 128), len(GESTURE_CLASSES), labels,
                    info={"seed": seed, "classes": list(GESTURE_CLASSES),
                          "split": "rng [seed, 0, i] train / [seed, 1, i] test"},
                    _events=events)


# -- procedural temporal order ------------------------------------------------------------

#: Shortest sample of ``temporal_synth`` (four frames 4 steps apart and the OFF step).
TEMPORAL_MIN_STEPS = 14


def _temporal_frames(rng, name, size):
    """The frames (boolean masks) of one ``temporal_synth`` sample and their spacing."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    c = size / 2
    if name in ("rotate_cw", "rotate_ccw"):
        h = rng.uniform(0.3, 0.42) * size
        bar = np.array([[-h, -1.0], [h, -1.0], [h, 1.0], [-h, 1.0]])
        cx, cy = c + rng.uniform(-1.5, 1.5, 2)
        a0 = rng.uniform(0, np.pi)
        da = np.deg2rad(rng.uniform(25, 40))
        frames = [_render(bar, cx, cy, 1.0, a0 + j * da, ys, xs) for j in range(4)]
        gap = int(rng.integers(3, 5))
        return (frames if name == "rotate_cw" else frames[::-1]), gap
    if name in ("move_right", "move_left"):
        step = rng.uniform(3.0, 4.0)
        x0 = rng.uniform(1.5, size - 1.5 - 3 * step)
        y0 = rng.uniform(2.0, size - 2.0)
        sq = _polygon("square")
        frames = [_render(sq, x0 + j * step, y0, 1.5, 0.0, ys, xs) for j in range(4)]
        gap = int(rng.integers(3, 5))
        return (frames if name == "move_right" else frames[::-1]), gap
    cx, cy = c + rng.uniform(-2, 2, 2)
    ang = rng.uniform(0, np.pi / 2)
    sq = _polygon("square")
    a = _render(sq, cx, cy, rng.uniform(1.3, 1.8), ang, ys, xs)       # a small blob
    outer = rng.uniform(0.28, 0.34) * size
    b = _render(sq, cx, cy, outer, ang, ys, xs) & \
        ~_render(sq, cx, cy, outer - 1.2, ang, ys, xs)                 # a ring around it
    gap = int(rng.integers(4, 6))
    return ([a, b, a] if name == "aba" else [a, a, b]), gap


def temporal_sample(rng, label, *, timesteps=16, dt_us=1000, size=16, noise=8, keep=0.9):
    """One ``temporal_synth`` sample of class ``label`` (see the module docstring).

    Parameters
    ----------
    rng : numpy.random.Generator
    label : int
        Index into :data:`TEMPORAL_CLASSES`.
    timesteps, dt_us : int
        The sample lasts ``timesteps * dt_us`` microseconds (``timesteps >= 14``).
    size : int
        Sensor width and height.
    noise : float
        Mean number of uniform noise events.
    keep : float
        Probability that an event of a frame is kept.

    Returns
    -------
    structured ndarray of :data:`sim.events.EVENT_DTYPE`, sorted by ``t``.
    """
    if timesteps < TEMPORAL_MIN_STEPS:
        raise DataError(f"temporal_synth needs at least {TEMPORAL_MIN_STEPS} time steps, "
                        f"got {timesteps}")
    frames, gap = _temporal_frames(rng, TEMPORAL_CLASSES[label], size)
    span = (len(frames) - 1) * gap + 2                 # the last frame's OFF step included
    start = int(rng.integers(0, timesteps - span + 1))
    chunks = []
    for j, mask in enumerate(frames):
        k = start + j * gap
        yy, xx = np.nonzero(mask)
        for pol, step in ((1, k), (0, k + 1)):
            kept = rng.random(len(yy)) < keep
            t = step * dt_us + rng.integers(0, dt_us, int(kept.sum()))
            chunks.append((xx[kept], yy[kept], np.full(int(kept.sum()), pol), t))
    n_noise = rng.poisson(noise)
    chunks.append((rng.integers(0, size, n_noise), rng.integers(0, size, n_noise),
                   rng.integers(0, 2, n_noise), rng.integers(0, timesteps * dt_us, n_noise)))
    # the anchor: binning counts steps from the first event's timestamp
    chunks.append((rng.integers(0, size, 1), rng.integers(0, size, 1), rng.integers(0, 2, 1),
                   np.zeros(1, dtype=np.int64)))
    x, y, p, t = (np.concatenate([c[i] for c in chunks]) for i in range(4))
    ev = np.zeros(len(t), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, p, t
    return ev[np.argsort(ev["t"], kind="stable")]


def _temporal(split, seed, timesteps, dt_us, n_train=2400, n_test=480, limit=None, **kw):
    n = n_train if split == "train" else n_test
    if limit:
        n = min(n, limit)
    sid = 0 if split == "train" else 1
    labels = np.arange(n) % len(TEMPORAL_CLASSES)
    events = [temporal_sample(np.random.default_rng([seed, sid, i]), int(labels[i]),
                              timesteps=timesteps, dt_us=dt_us, **kw) for i in range(n)]
    return EventSet("temporal_synth", split, (2, 16, 16), len(TEMPORAL_CLASSES), labels,
                    info={"seed": seed, "classes": list(TEMPORAL_CLASSES),
                          "split": "rng [seed, 0, i] train / [seed, 1, i] test"},
                    _events=events)


# -- tonic data sets on disk --------------------------------------------------------------

def _tonic_class(name):
    try:
        import tonic.datasets as td
    except ImportError:
        raise DataError(f"the {name} data set needs tonic (pip install tonic)") from None
    base = {"nmnist": td.NMNIST, "dvs_gesture": td.DVSGesture}[name]

    def _check_exists(self):
        return self._folder_contains_at_least_n_files_of_type(
            1, ".bin" if name == "nmnist" else ".npy")

    def download(self):
        raise DataError(f"{self.location_on_system}: no {name} data found (expected tonic's "
                        f"layout with the '{self.folder_name}' folder); this tool never "
                        f"downloads, fetch the data set yourself")
    # keep tonic's class name: it names the folder under root
    return type(base.__name__, (base,), {"_check_exists": _check_exists,
                                         "download": download})


def _tonic(name, split, seed, timesteps, dt_us, root=None, limit=None, **_):
    if root is None:
        raise DataError(f"the {name} data set needs --root PATH (a copy on disk)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data directory not found")
    cls = _tonic_class(name)
    ds = cls(str(root), train=(split == "train"))
    n = len(ds.targets)
    sel = np.arange(n)
    if limit and limit < n:
        sel = np.sort(np.random.default_rng(seed).permutation(n)[:limit])
    labels = np.asarray(ds.targets, dtype=np.int64)[sel]
    shape = (2, cls.sensor_size[1], cls.sensor_size[0])

    def reader(i):
        ev, _ = ds[int(sel[i])]
        ev = ev[np.argsort(ev["t"], kind="stable")]
        return ev
    n_classes = 10 if name == "nmnist" else 11
    return EventSet(name, split, shape, n_classes, labels,
                    info={"root": str(root), "tonic_class": cls.__name__}, _reader=reader)


DATASETS = ("digits", "gesture_synth", "temporal_synth", "nmnist", "dvs_gesture")


def load_dataset(name, split, *, seed=0, timesteps=None, dt_us=None, root=None, limit=None,
                 **kw):
    """Load one split of a data set as an :class:`EventSet`.

    Parameters
    ----------
    name : {"digits", "gesture_synth", "temporal_synth", "nmnist", "dvs_gesture"}
    split : {"train", "test"}
    seed : int
        Seeds the event coding (digits) or generation (gesture_synth).
    timesteps, dt_us : int, optional
        Used by the generated data sets; default :func:`default_input`.
    root : path, optional
        Directory holding the tonic data sets.
    limit : int, optional
        Keep only the first ``limit`` samples (a seeded subset for tonic data).
    **kw
        ``encoding`` for digits; ``n_train``, ``n_test``, ``noise`` for gesture_synth and
        temporal_synth.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}, expected one of {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}, expected 'train' or 'test'")
    d = default_input(name)
    timesteps = timesteps or d["timesteps"]
    dt_us = dt_us or d["dt_us"]
    if name == "digits":
        return _digits(split, seed, timesteps, dt_us, limit=limit, **kw)
    if name == "gesture_synth":
        return _gesture(split, seed, timesteps, dt_us, limit=limit, **kw)
    if name == "temporal_synth":
        return _temporal(split, seed, timesteps, dt_us, limit=limit, **kw)
    return _tonic(name, split, seed, timesteps, dt_us, root=root, limit=limit)

"""Input events: read, check, bin into time steps and clip counts.

One sample is a tonic-style structured array with fields ``x``, ``y``, ``p``, ``t``
(``t`` in microseconds). This module turns it into the per-step input spikes that the
reference consumes and that the host tool streams to the board, with exactly the rules
of the contract (docs/semantics.md):

- events must be sorted by ``t``; step ``k = (t - t0) // dt_us`` with ``t0`` the first
  timestamp; events with ``k >= T`` are dropped and counted;
- ``x``, ``y``, ``p`` are range-checked on every event, dropped ones included;
- inside one step the count at one ``(p, y, x)`` is clipped to ``count_clip``.

The result, :class:`BinnedEvents`, lists for every step the distinct sources in
ascending flat index ``(p * H + y) * W + x`` with their clipped counts. That is also
the order in which the host tool sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["EventError", "BinnedEvents", "EVENT_DTYPE", "load_events", "normalize_events",
           "bin_events", "make_events", "save_events"]

#: The canonical event dtype (tonic's field names; the order of fields does not matter).
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])


class EventError(ValueError):
    """An event sample is malformed or out of range (one line, names file and field)."""


@dataclass
class BinnedEvents:
    """Per-step input spikes of one sample.

    Attributes
    ----------
    shape : tuple
        ``(P, H, W)`` of the sensor.
    timesteps : int
        ``T``.
    step_ptr : ndarray of int64, shape (T + 1,)
        Step ``k`` holds entries ``step_ptr[k]:step_ptr[k + 1]``.
    src : ndarray of int64
        Flat source index ``(p * H + y) * W + x``, ascending within a step.
    count : ndarray of int64
        Clipped count (1 .. count_clip) of each entry.
    n_events : int
        Events in the file.
    n_dropped : int
        Events whose step was ``>= T``.
    n_clipped : int
        Events removed by count clipping.
    """
    shape: tuple
    timesteps: int
    step_ptr: np.ndarray
    src: np.ndarray
    count: np.ndarray
    n_events: int = 0
    n_dropped: int = 0
    n_clipped: int = 0

    def step(self, k):
        """``(src, count)`` of step ``k``."""
        a, b = self.step_ptr[k], self.step_ptr[k + 1]
        return self.src[a:b], self.count[a:b]

    @property
    def n_spikes(self):
        """Input spikes delivered to the network (sum of clipped counts)."""
        return int(self.count.sum())

    def to_frames(self):
        """Dense ``(T, P, H, W)`` int64 count frames (for tests and plots)."""
        frames = np.zeros((self.timesteps, int(np.prod(self.shape))), dtype=np.int64)
        steps = np.repeat(np.arange(self.timesteps), np.diff(self.step_ptr))
        frames[steps, self.src] = self.count
        return frames.reshape((self.timesteps, *self.shape))

    def coords(self, k):
        """``(p, y, x, count)`` arrays of step ``k``."""
        src, count = self.step(k)
        P, H, W = self.shape
        return src // (H * W), (src // W) % H, src % W, count

    @classmethod
    def from_frames(cls, frames):
        """Build from dense ``(T, P, H, W)`` non-negative integer counts (already clipped)."""
        frames = np.asarray(frames)
        T = frames.shape[0]
        flat = frames.reshape(T, -1)
        steps, src = np.nonzero(flat)
        count = flat[steps, src].astype(np.int64)
        ptr = np.zeros(T + 1, dtype=np.int64)
        np.add.at(ptr, steps + 1, 1)
        return cls(shape=tuple(int(s) for s in frames.shape[1:]), timesteps=T,
                   step_ptr=np.cumsum(ptr), src=src.astype(np.int64), count=count,
                   n_events=int(count.sum()))


def normalize_events(events, where="events"):
    """Return ``events`` as a structured array of :data:`EVENT_DTYPE`.

    Fields are read by name; boolean or integer polarity and unsigned times are
    accepted. Raises :class:`EventError` for missing fields or non-integer values.
    """
    names = getattr(getattr(events, "dtype", None), "names", None)
    if names is None:
        raise EventError(f"{where}: expected a structured array with fields x, y, p, t")
    if np.ndim(events) != 1:
        raise EventError(f"{where}: expected a 1-D structured array of events, got "
                         f"{np.ndim(events)} dimensions (shape {np.shape(events)})")
    for f in ("x", "y", "p", "t"):
        if f not in names:
            raise EventError(f"{where}: missing field {f!r} (has {', '.join(names)})")
        if events.dtype[f].shape != ():
            raise EventError(f"{where}: field {f!r} is a sub-array of shape "
                             f"{events.dtype[f].shape}, expected one number per event")
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    for f in ("x", "y", "p", "t"):
        col = np.asarray(events[f])
        if col.dtype == np.bool_:
            col = col.astype(np.int64)
        elif np.issubdtype(col.dtype, np.floating):
            if col.size and not np.all(np.isfinite(col) & (col == np.round(col))):
                raise EventError(f"{where}: field {f!r} holds non-integer values")
        elif not np.issubdtype(col.dtype, np.integer):
            raise EventError(f"{where}: field {f!r} has dtype {col.dtype}, expected integers")
        if f == "t":
            if col.dtype == np.uint64 and col.size and int(col.max()) > np.iinfo(np.int64).max:
                raise EventError(f"{where}: field 't' overflows int64")
            out[f] = col.astype(np.int64)
        else:
            c64 = col.astype(np.int64)
            lim = np.iinfo(EVENT_DTYPE[f]).max
            if c64.size and (c64.min() < -lim or c64.max() > lim):
                raise EventError(f"{where}: field {f!r} value {int(c64.max())} is out of range")
            out[f] = c64
    return out


def check_events(events, shape, where="events"):
    """Check sortedness and the ranges of ``x``, ``y``, ``p`` against ``shape = (P, H, W)``."""
    P, H, W = shape
    t = events["t"]
    if t.size > 1:
        # compared, not subtracted: a difference of two int64 times can wrap around
        back = t[1:] < t[:-1]
        if back.any():
            i = int(np.argmax(back)) + 1
            raise EventError(f"{where}: events are not sorted by t (event {i}: t={int(t[i])} "
                             f"after t={int(t[i - 1])})")
    for f, n in (("x", W), ("y", H), ("p", P)):
        col = events[f]
        bad = (col < 0) | (col >= n)
        if bad.any():
            i = int(np.argmax(bad))
            raise EventError(f"{where}: event {i}: {f}={int(col[i])} is outside 0..{n - 1}")


def bin_events(events, shape, timesteps, dt_us, count_clip=1, where="events"):
    """Bin a sample into ``timesteps`` steps of ``dt_us`` and clip counts.

    Parameters
    ----------
    events : structured ndarray
        Fields ``x``, ``y``, ``p``, ``t`` (read by name).
    shape : tuple
        ``(P, H, W)`` of the network input.
    timesteps, dt_us, count_clip : int
        As in the model's ``input`` section.

    Returns
    -------
    BinnedEvents
    """
    for name, value in (("timesteps", timesteps), ("dt_us", dt_us),
                        ("count_clip", count_clip)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or value < 1:
            raise EventError(f"{where}: {name} {value!r} must be a positive integer")
    ev = normalize_events(events, where)
    check_events(ev, shape, where)
    P, H, W = shape
    n = len(ev)
    if n == 0:
        return BinnedEvents(tuple(shape), timesteps, np.zeros(timesteps + 1, np.int64),
                            np.zeros(0, np.int64), np.zeros(0, np.int64))
    k = _steps(ev["t"], dt_us)
    keep = k < timesteps
    n_dropped = int(n - keep.sum())
    k = k[keep].astype(np.int64)
    src = (ev["p"][keep].astype(np.int64) * H + ev["y"][keep]) * W + ev["x"][keep]
    key = k * (P * H * W) + src
    uniq, counts = np.unique(key, return_counts=True)
    clipped = np.minimum(counts, count_clip)
    steps = uniq // (P * H * W)
    ptr = np.zeros(timesteps + 1, dtype=np.int64)
    np.add.at(ptr, steps + 1, 1)
    return BinnedEvents(tuple(shape), timesteps, np.cumsum(ptr), uniq % (P * H * W),
                        clipped.astype(np.int64), n_events=n, n_dropped=n_dropped,
                        n_clipped=int((counts - clipped).sum()))


def _steps(t, dt_us):
    """Step ``(t - t[0]) // dt_us`` of sorted int64 times ``t``, exact for any span.

    ``t - t[0]`` lies in ``0 .. 2**64 - 1``, which int64 cannot hold (``t`` from
    ``-2**63`` to ``2**63 - 1``) but uint64 holds exactly: the subtraction is done in
    uint64, whose wrap-around is arithmetic modulo ``2**64``.
    """
    u = t.astype(np.uint64)             # two's complement: t mod 2**64
    # a dt_us beyond uint64 puts every event in step 0, as 2**64 - 1 does
    return (u - u[0]) // np.uint64(min(int(dt_us), (1 << 64) - 1))


def load_events(path):
    """Read one sample from a file.

    Supported: ``.npy`` holding a structured array; ``.npz`` holding a structured array
    under ``events`` (or its only array); with tonic installed, N-MNIST ``.bin`` and
    ``.aedat4``.

    Returns
    -------
    events : structured ndarray of :data:`EVENT_DTYPE`
    label : int or None
        From an ``.npz`` ``label`` entry when present.
    """
    path = Path(path)
    if not path.is_file():
        raise EventError(f"{path}: file not found")
    suffix = path.suffix.lower()
    label = None
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "events" in z.files:
                    arr = z["events"]
                elif len(z.files) == 1:
                    arr = z[z.files[0]]
                else:
                    raise EventError(f"{path}: no 'events' array (has {', '.join(z.files)})")
                if "label" in z.files:
                    label = int(z["label"])
        elif suffix in (".bin", ".aedat4"):
            arr = _read_with_tonic(path, suffix)
        else:
            raise EventError(f"{path}: unknown event file type {suffix!r} "
                             f"(expected .npy, .npz, .bin or .aedat4)")
    except EventError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file
        raise EventError(f"{path}: cannot read events: {e}") from None
    return normalize_events(arr, str(path)), label


def _read_with_tonic(path, suffix):
    try:
        import tonic.io as tio
    except ImportError:
        raise EventError(f"{path}: reading {suffix} files needs tonic "
                         f"(pip install -e '.[tonic]')") from None
    if suffix == ".bin":
        return tio.read_mnist_file(str(path), dtype=np.dtype(
            [("x", int), ("y", int), ("t", int), ("p", int)]))
    return tio.read_aedat4(str(path))


def save_events(path, events, label=None):
    """Write a sample as ``.npz`` (``events`` and optional ``label``) or ``.npy``."""
    path = Path(path)
    events = normalize_events(events)
    if path.suffix == ".npy":
        np.save(path, events)
    else:
        extra = {} if label is None else {"label": np.int64(label)}
        np.savez(path, events=events, **extra)


def make_events(shape, n, duration_us, rng, t0=0):
    """A random, sorted sample of ``n`` events over ``duration_us`` (for tests and benches)."""
    P, H, W = shape
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, W, n)
    ev["y"] = rng.integers(0, H, n)
    ev["p"] = rng.integers(0, P, n)
    ev["t"] = np.sort(rng.integers(0, max(1, duration_us), n)) + t0
    return ev

"""Stream event samples to a board and collect its predictions.

``python -m boards.host --port PORT --events PATH [--board arty_a7] [--baud 2000000]
[--model DIR] [--limit N] [--timeout S] [--json OUT]``

``PORT`` is anything :func:`serial.serial_for_url` opens: a device (``/dev/ttyUSB1``),
a pseudo-terminal path (``python -m boards.emulator`` prints one), or a URL.
``PATH`` is one sample (``.npy``/``.npz``/``.bin``/``.aedat4``, read by
:func:`sim.events.load_events`) or a directory of such files (sorted by name), with the
label taken from an ``.npz`` ``label`` entry when present.

The tool asks the board for its ``VERSION`` (input shape, steps, binning, model id),
bins and range-checks every sample first (an out-of-range event is an error and
nothing is sent), resets the board, then sends the samples one at a time as in
boards/protocol.py and waits for each ``RESULT``. With ``--model`` it checks that the
board runs that model (model id) and compares every answer with the bit-exact
reference. ``--timeout`` bounds the whole wait for each answer, from the request's last
byte written (a board that keeps sending other frames does not extend it). It prints one
line per sample and a summary: accuracy against the labels, agreement with the
reference, latency per sample (from the first byte written to the answer read, so it
includes the link) and the board's error flags and counters.

Exit status: 0 when every sample was answered and the board reports no link error
(bad frames, dropped or out-of-range events, UART errors, token sequence; a state
overflow is legal integer behaviour and only reported) and, with ``--model``, every
answer equals the reference; 1 otherwise; 2 for bad arguments or inputs (one line,
nothing sent).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.cli import ArgumentParser, CliError, atomic_path, main_guard, one_line
from sim.events import EventError, bin_events, load_events

from . import protocol as pr

__all__ = ["HostError", "BoardLink", "load_samples", "main"]

EVENT_SUFFIXES = (".npy", ".npz", ".bin", ".aedat4")


PROG = "python -m boards.host"


class HostError(CliError):
    """A bad input or argument (exit status 2)."""


class LinkError(Exception):
    """The board did not answer as the protocol says (exit status 1)."""


#: Model used with --dataset when --model is not given (relative to the working directory).
DEFAULT_MODEL = "models/digits"


@dataclass
class Sample:
    name: str
    events: np.ndarray
    label: int | None


def load_samples(path):
    """Read one event file or a directory of them; returns a list of :class:`Sample`."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in EVENT_SUFFIXES)
        if not files:
            raise HostError(f"{path}: no event files ({', '.join(EVENT_SUFFIXES)}) in directory")
    elif path.exists():
        files = [path]
    else:
        raise HostError(f"{path}: no such file or directory")
    out = []
    for f in files:
        try:
            ev, label = load_events(f)
        except EventError as e:
            raise HostError(str(e)) from None
        out.append(Sample(f.name, ev, label))
    return out


def dataset_samples(name, model, limit=None):
    """The test split of a built-in data set, coded with the model's input settings."""
    from sim.datasets import DataError, load_dataset
    inp = model.input
    try:
        data = load_dataset(name, "test", timesteps=inp.timesteps, dt_us=inp.dt_us, limit=limit)
    except DataError as e:
        raise HostError(f"--dataset {name}: {e}") from None
    if tuple(data.shape) != tuple(inp.shape):
        raise HostError(f"--dataset {name}: its sensor {list(data.shape)} does not match the "
                        f"model input {list(inp.shape)}")
    return [Sample(f"{name}[{i}]", *data.sample(i)) for i in range(len(data))]


class BoardLink:
    """The host end of the protocol on an open serial port (or any object with
    ``read(n)``, ``write(b)`` and a ``timeout``)."""

    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.parser = pr.Parser(pr.BOARD_TYPES)
        self._pending = []

    def send(self, data):
        self.port.write(data)
        flush = getattr(self.port, "flush", None)
        if flush:
            flush()

    def deadline(self):
        """The end of the wait for the answer to a request just sent."""
        return time.perf_counter() + self.timeout

    def receive(self, ftype, deadline, what=None):
        """The next answer of type ``ftype`` (other answers are skipped).

        Parameters
        ----------
        ftype : int
        deadline : float
            ``time.perf_counter()`` value (from :meth:`deadline`) after which the wait
            ends with :class:`LinkError`, however many other frames arrive meanwhile.
        what : str, optional
            Names the awaited answer in the error message.
        """
        while True:
            while self._pending:
                frame = self._pending.pop(0)
                if frame.type == ftype:
                    return pr.decode_answer(frame)
            if time.perf_counter() > deadline:
                raise LinkError(f"no {what or _TYPE_NAMES[ftype] + ' answer'} from the board "
                                f"within {self.timeout:g} s")
            data = self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 1))
            if data:
                self._pending += self.parser.feed(data)

    def command(self, ftype, answer):
        self.send(pr.encode_frame(ftype))
        return self.receive(answer, self.deadline())

    def version(self):
        try:
            return self.command(pr.VERSION, pr.VERSION_ANSWER)
        except LinkError as e:
            if self.parser.bad_frames:      # e.g. CRC-8 frames of a protocol 1 bitstream
                raise LinkError(f"{e}; {self.parser.bad_frames} malformed frames arrived (a "
                                f"board built for an older protocol version than "
                                f"{pr.PROTOCOL_VERSION} must be rebuilt)") from None
            raise

    def reset(self):
        return self.command(pr.RESET, pr.STATUS_ANSWER)

    def status(self):
        return self.command(pr.STATUS, pr.STATUS_ANSWER)

    def infer(self, binned, sample_id):
        """Send one binned sample; returns ``(ResultAnswer, latency_s)``."""
        data = pr.words_to_frames(pr.sample_words(binned, sample_id))
        t0 = time.perf_counter()
        self.send(data)
        deadline = self.deadline()
        want = sample_id & ((1 << pr.TOKEN_BITS) - 1)
        while True:
            answer = self.receive(pr.RESULT, deadline, f"RESULT answer for sample {sample_id}")
            if answer.sample_id == want:
                return answer, time.perf_counter() - t0


_TYPE_NAMES = {pr.RESULT: "RESULT", pr.STATUS_ANSWER: "STATUS", pr.VERSION_ANSWER: "VERSION"}


def _bin_all(samples, shape, T, dt_us, clip):
    try:
        pr.check_shape(shape)
    except pr.ProtocolError as e:
        raise HostError(str(e)) from None
    out = []
    for s in samples:
        try:
            out.append(bin_events(s.events, shape, T, dt_us, clip, where=s.name))
        except EventError as e:
            raise HostError(str(e)) from None
    return out


def _write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


def check_args(args):
    """Refuse option values that make no sense (:class:`HostError`)."""
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise HostError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    if args.limit is not None and args.limit < 1:
        raise HostError(f"--limit {args.limit}: must be at least 1")
    if args.baud is not None and args.baud <= 0:
        raise HostError(f"--baud {args.baud}: must be positive")


def run(args, out=None):
    """The tool's work; raises :class:`HostError` or :class:`LinkError`."""
    out = out or sys.stdout
    check_args(args)
    if args.dataset is not None and not args.model:
        args.model = DEFAULT_MODEL
    from .platforms import BoardError, get_board
    try:
        board = get_board(args.board)
    except BoardError as e:
        raise HostError(f"--board: {e}") from None
    if args.baud is None:
        args.baud = board.default_baud
    model = None
    binned = None
    if args.model:
        from sim.model import ModelError, load_model
        try:
            model = load_model(args.model)
        except (ModelError, OSError) as e:
            raise HostError(str(e)) from None
        inp = model.input
    samples = (dataset_samples(args.dataset, model, args.limit) if args.dataset
               else load_samples(args.events)[:args.limit])
    if model is not None:
        binned = _bin_all(samples, tuple(inp.shape), inp.timesteps, inp.dt_us, inp.count_clip)
    if args.json and not Path(args.json).parent.is_dir():
        raise HostError(f"--json {args.json}: directory does not exist")

    import serial
    try:
        port = serial.serial_for_url(args.port, baudrate=args.baud, timeout=0.05)
    except (serial.SerialException, ValueError, OSError) as e:
        raise HostError(f"--port {args.port}: cannot open ({e})") from None
    try:
        link = BoardLink(port, timeout=args.timeout)
        ver = link.version()
        if ver.protocol != pr.PROTOCOL_VERSION:
            raise LinkError(f"board speaks protocol version {ver.protocol}, this tool "
                            f"{pr.PROTOCOL_VERSION}")
        if model is not None and ver.model_id != pr.model_id(model):
            raise LinkError(f"the board runs model id 0x{ver.model_id:08x}, --model "
                            f"{args.model} is 0x{pr.model_id(model):08x}")
        print(f"board: protocol {ver.protocol}, input {ver.shape}, T={ver.timesteps}, "
              f"dt={ver.dt_us} us, count_clip={ver.count_clip}, {ver.n_classes} classes, "
              f"model id 0x{ver.model_id:08x}", file=out)
        if binned is None:
            binned = _bin_all(samples, tuple(ver.shape), ver.timesteps, ver.dt_us,
                              ver.count_clip)
        link.reset()
        records = []
        t_start = time.perf_counter()
        for i, (s, b) in enumerate(zip(samples, binned)):
            answer, latency = link.infer(b, i)
            rec = {"sample": s.name, "label": s.label, "prediction": answer.prediction,
                   "scores": answer.scores, "latency_ms": latency * 1e3,
                   "cycles": answer.cycles, "flags": answer.flags}
            line = (f"{i:5d} {s.name}: prediction {answer.prediction}"
                    + ("" if s.label is None else f" label {s.label}")
                    + f"  {latency * 1e3:.2f} ms")
            if model is not None:
                from sim.reference import run as reference_run
                ref = reference_run(model, b, record=False)
                rec["matches_reference"] = (list(map(int, ref.scores)) == answer.scores
                                            and ref.prediction == answer.prediction)
                if not rec["matches_reference"]:
                    line += f"  MISMATCH (reference {ref.prediction}, {list(ref.scores)})"
            if answer.flags:
                line += f"  flags: {pr.describe_flags(answer.flags)}"
            print(line, file=out)
            records.append(rec)
        elapsed = time.perf_counter() - t_start
        status = link.status()
    finally:
        port.close()

    lat = np.array([r["latency_ms"] for r in records])
    labelled = [r for r in records if r["label"] is not None]
    busy = float(lat.sum()) / 1e3       # link time only (the reference checks excluded)
    summary = {"samples": len(records), "seconds": elapsed, "link_seconds": busy,
               "samples_per_s": len(records) / busy if busy > 0 else None,
               "latency_ms": {"mean": float(lat.mean()), "median": float(np.median(lat)),
                              "max": float(lat.max())},
               "status": vars(status)}
    print(f"{len(records)} samples, {busy:.3f} s on the link "
          f"({summary['samples_per_s']:.1f} samples/s); latency mean {lat.mean():.2f} ms, "
          f"median {np.median(lat):.2f} ms, max {lat.max():.2f} ms", file=out)
    if labelled:
        acc = sum(r["label"] == r["prediction"] for r in labelled) / len(labelled)
        summary["accuracy"] = acc
        print(f"accuracy {acc:.4f} on {len(labelled)} labelled samples", file=out)
    ok = not status.flags & pr.LINK_ERROR_FLAGS
    if model is not None:
        agree = sum(r["matches_reference"] for r in records)
        summary["reference_agreement"] = agree / len(records)
        print(f"reference: {agree}/{len(records)} answers equal the bit-exact reference",
              file=out)
        ok = ok and agree == len(records)
    print(f"board status: flags {pr.describe_flags(status.flags)}; bad frames "
          f"{status.bad_frames}, dropped events {status.dropped_events}, UART errors "
          f"{status.uart_errors}, samples {status.samples}", file=out)
    if args.json:
        _write_json(args.json, {"summary": summary, "samples": records})
    return 0 if ok else 1


def build_parser():
    ap = ArgumentParser(prog=PROG, description="Stream event samples to a board and collect "
                                               "its predictions.")
    ap.add_argument("--port", required=True, help="serial device, pty path or pyserial URL")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", help="event file or directory of event files")
    src.add_argument("--dataset", choices=["digits"],
                     help="the test split of a built-in data set, coded with the model's "
                          "input settings (--model, default models/digits)")
    ap.add_argument("--board", default=None,
                    help="board name (sets the default baud rate; default arty_a7)")
    ap.add_argument("--baud", type=int, default=None,
                    help="baud rate (default: the board's, 2000000 on arty_a7)")
    ap.add_argument("--model", help="model directory: check the board's model id and "
                                    "compare answers with the reference")
    ap.add_argument("--limit", type=int, default=None,
                    help="only the first N samples (test samples with --dataset, files in "
                         "name order with --events)")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds to wait for each answer, in all (default 5)")
    ap.add_argument("--json", help="write per-sample results and the summary here")
    return ap


def _main(argv):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except LinkError as e:
        print(f"{PROG}: error: {one_line(e)}", file=sys.stderr)
        return 1


def main(argv=None):
    """The command line; returns the exit status (0, 1 or 2, see the module docstring)."""
    return main_guard(_main, argv, prog=PROG, errors=(pr.ProtocolError,))


if __name__ == "__main__":
    sys.exit(main())

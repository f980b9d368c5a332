"""A Python model of the board's protocol behaviour (the host tool's test partner).

:class:`BoardEmulator` answers the byte stream of the host exactly as the board is
specified to (boards/protocol.py, docs/protocol.md): it parses frames with
:class:`boards.protocol.Parser`, collects one sample's input events per step from the
event words, and at the end-of-sample token runs the bit-exact reference
(:func:`sim.reference.run`) and sends a ``RESULT`` frame. It also keeps the sticky
error flags and counters the ``STATUS_ANSWER`` frame reports. It does not model
cycles: its ``cycles`` fields are 0.

``python -m boards.emulator --model DIR`` serves it on a pseudo-terminal and prints the
terminal's path, which ``python -m boards.host --port PATH`` can then use.
"""

from __future__ import annotations

import os
import select
import threading

import numpy as np

from sim.events import BinnedEvents
from sim.geometry import END_SAMPLE, END_STEP, SPIKE
from sim.reference import run as reference_run

from . import protocol as pr

__all__ = ["BoardEmulator", "serve_pty"]

PROG = "python -m boards.emulator"


class BoardEmulator:
    """The board's protocol behaviour on top of the reference model.

    Parameters
    ----------
    model : sim.model.Model
    """

    def __init__(self, model):
        self.model = model
        self.version = pr.VersionAnswer.for_model(model)
        self.parser = pr.Parser(pr.HOST_TYPES)
        self.results = []           # ResultAnswer of every sample, for tests
        self._reset()
        # run the reference once now, so that a compiled backend's start-up cost does
        # not show up as the latency of the first sample
        reference_run(model, BinnedEvents.from_frames(self._frames.reshape(
            (model.input.timesteps, *model.input.shape))), record=False)

    def _reset(self):
        self.flags = 0
        self.samples = 0
        self._bad_base = self.parser.bad_frames
        self._new_sample()

    def _new_sample(self):
        P, H, W = self.model.input.shape
        self._frames = np.zeros((self.model.input.timesteps, P * H * W), dtype=np.int64)
        self._step = 0

    @property
    def bad_frames(self):
        return self.parser.bad_frames - self._bad_base

    def status(self):
        return pr.StatusAnswer(self.flags, self.bad_frames, 0, 0, self.samples, 0)

    def feed(self, data):
        """Process bytes from the host; returns the answer bytes."""
        out = bytearray()
        for i in range(len(data)):      # byte by byte: flags follow the exact frame order
            for frame in self.parser.feed(data[i:i + 1]):
                out += self._frame(frame)
        return bytes(out)

    def _frame(self, frame):
        out = bytearray()
        if self.bad_frames:
            self.flags |= pr.FLAG_BAD_FRAME
        if frame.type == pr.EVENTS:
            for w in frame.words:
                out += self._word(w)
        elif frame.type == pr.RESET:
            self._reset()
            out += self.status().encode()
        elif frame.type == pr.STATUS:
            out += self.status().encode()
        elif frame.type == pr.VERSION:
            out += self.version.encode()
        return bytes(out)

    def _word(self, w):
        P, H, W = self.model.input.shape
        T = self.model.input.timesteps
        kind, f = pr.decode_word(w)
        if kind == SPIKE:
            p, y, x = f
            if p >= P or y >= H or x >= W:
                self.flags |= pr.FLAG_EVENT_RANGE
            elif self._step >= T:
                self.flags |= pr.FLAG_SEQUENCE
            else:
                self._frames[self._step, (p * H + y) * W + x] += 1
        elif kind == END_STEP:
            if self._step >= T:
                self.flags |= pr.FLAG_SEQUENCE
            else:
                self._step += 1
        elif kind == END_SAMPLE:
            if self._step != T:
                self.flags |= pr.FLAG_SEQUENCE
            binned = BinnedEvents.from_frames(self._frames.reshape((T, P, H, W)))
            res = reference_run(self.model, binned, record=False)
            if any(bool(np.any(o)) for o in res.overflow.values()):
                self.flags |= pr.FLAG_STATE_OVERFLOW
            self.samples += 1
            answer = pr.ResultAnswer(f, res.prediction, 0, self.flags,
                                     [int(s) for s in res.scores])
            self.results.append(answer)
            self._new_sample()
            return answer.encode()
        else:
            self.flags |= pr.FLAG_SEQUENCE
        return b""


def run_on_pty(make_worker, join_timeout=2.0):
    """Run a board model behind a new raw pseudo-terminal, in a daemon thread.

    Parameters
    ----------
    make_worker : callable
        ``make_worker(master_fd, stopping)`` returns the thread's target: it talks to
        the host through ``master_fd`` and returns once ``stopping`` (a
        :class:`threading.Event`) is set.
    join_timeout : float
        Seconds ``stop`` waits for the thread.

    Returns
    -------
    path : str
        The terminal to open (e.g. with ``serial.serial_for_url``).
    stop : callable
        Stops the thread and closes the terminal.
    """
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    stopping = threading.Event()
    thread = threading.Thread(target=make_worker(master, stopping), daemon=True)
    thread.start()

    def stop():
        stopping.set()
        thread.join(timeout=join_timeout)
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass

    return path, stop


def serve_pty(emulator):
    """Serve ``emulator`` on a new pseudo-terminal (see :func:`run_on_pty`)."""
    def worker(master, stopping):
        def loop():
            while not stopping.is_set():
                r, _, _ = select.select([master], [], [], 0.05)
                if not r:
                    continue
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                answer = emulator.feed(data)
                if answer:
                    os.write(master, answer)
        return loop

    return run_on_pty(worker)


def main(argv=None):
    """``python -m boards.emulator --model DIR``: serve the emulator on a new pty and print
    its path (Ctrl-C stops); a bad model is one line on stderr, exit status 2."""
    from sim.cli import ArgumentParser
    from sim.model import load_model

    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model directory")
    args = ap.parse_args(argv)
    model = load_model(args.model)
    return serve_until_interrupted(*serve_pty(BoardEmulator(model)))


def serve_until_interrupted(path, stop):
    """Print the terminal's path, serve until Ctrl-C, then ``stop``; returns 0."""
    print(path, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0


if __name__ == "__main__":
    from sim.cli import run_main
    run_main(main, prog=PROG)

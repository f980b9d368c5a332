"""Seeded fuzzing of the host protocol codec: false accepts and frames lost after resync.

Run with ``python -m bench.protocol_fuzz`` (10^6 mutated frames by default, a few
minutes; ``--frames N`` for fewer). Prints the figures and writes
``bench/results/protocol_fuzz.json``.

What is fuzzed
--------------
Real frames, in both directions of the link (:mod:`boards.protocol`):

- host to board: the ``EVENTS`` frames of real samples (the test splits of ``digits``
  and ``gesture_synth``, binned with the shipped models' input settings and packed by
  :func:`boards.protocol.sample_words` and :func:`~boards.protocol.words_to_frames`),
  with ``RESET``, ``STATUS`` and ``VERSION`` commands between them, parsed by
  ``Parser(HOST_TYPES)`` (what the board's deframer does);
- board to host: ``RESULT`` frames with the reference's scores of those samples,
  ``STATUS_ANSWER`` and ``VERSION_ANSWER`` frames, parsed by ``Parser(BOARD_TYPES)``
  (what ``boards.host`` does).

Each *stream* is a run of 4 to 16 consecutive frames (host streams: consecutive frames of
one sample, a command now and then). One to four *mutations* hit distinct, randomly
chosen frames of the stream, each one of:

``flip``
    1 to 8 random bits flipped in the frame (flags and escapes included);
``drop``
    1 to 3 consecutive bytes removed;
``insert``
    1 to 3 random bytes inserted (a flag or an escape byte with probability 1/4 each);
``burst``
    4 to 64 random bytes written over the frame from a random position on (may run into
    the following frames) or inserted;
``truncate``
    the frame cut at a random byte, the rest of it (its closing flag included) lost.

A frame is *mutated* when a mutation changed, removed or inserted a byte between its
opening and its closing flag (those included), *intact* otherwise. The mutated stream,
followed by a flag (the link goes on), is fed to a new parser in 1 to 3 random pieces.

Counted
-------
``false_accepts``
    frames the parser accepted that are none of the frames sent in that stream (the
    corrupted frames that passed every check): target 0;
``intact_lost``
    intact frames missing from the accepted frames (in order): target 0;
``crc_rejects``
    pieces that passed every check but the CRC: the CRC alone stopped them. A CRC of
    ``b`` bits lets a random corruption through with probability ``2**-b``, so
    ``crc_rejects / 2**16`` is about the number of false accepts CRC-16 would have
    given here, ``crc_rejects / 2**8`` those of the former CRC-8;
``mutated_recovered``
    mutated frames accepted unchanged (e.g. a flag inserted right after the opening
    flag only adds an empty piece).
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sim.cli import ArgumentParser, CliError, atomic_path, run_main

RESULT = Path(__file__).resolve().parent / "results" / "protocol_fuzz.json"
ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m bench.protocol_fuzz"
MUTATIONS = ("flip", "drop", "insert", "burst", "truncate")
#: Test samples of each data set whose frames are used.
SAMPLES = {"digits": 24, "gesture_synth": 6}


@dataclass
class Corpus:
    """The frames streams are made of: ``host`` runs of frames (one per sample, commands
    interleaved) and ``board`` answers, each frame as ``(Frame, bytes)``."""
    host: list
    board: list
    sources: dict = field(default_factory=dict)


def build_corpus(samples=None, rng=None):
    """Frames of real samples of the shipped models (see the module docstring)."""
    import numpy as np

    from boards import protocol as pr
    from sim.datasets import load_dataset
    from sim.model import load_model
    from sim.reference import run as reference_run

    samples = SAMPLES if samples is None else samples
    rng = rng or random.Random(0)
    commands = [pr.RESET, pr.STATUS, pr.VERSION]

    def item(ftype, words=()):
        return pr.Frame(ftype, tuple(int(w) for w in words)), pr.encode_frame(ftype, words)

    host, board, sources = [], [], {}
    for name, n in samples.items():
        model = load_model(ROOT / "models" / name)
        inp = model.input
        data = load_dataset(name, "test", timesteps=inp.timesteps, dt_us=inp.dt_us, limit=n)
        binned = data.bin(inp.timesteps, inp.dt_us, inp.count_clip)
        version = pr.VersionAnswer.for_model(model)
        board.append(item(pr.VERSION_ANSWER, version.words()))
        frames = 0
        for i in range(len(binned)):
            b = binned.binned(i)
            words = pr.sample_words(b, i).tolist()
            run = []
            for j in range(0, len(words), pr.MAX_WORDS):
                if rng.random() < 0.1:
                    run.append(item(rng.choice(commands)))
                run.append(item(pr.EVENTS, words[j:j + pr.MAX_WORDS]))
            host.append(run)
            frames += len(run)
            res = reference_run(model, b, record=False)
            answer = pr.ResultAnswer(i, int(res.prediction), int(rng.getrandbits(20)),
                                     rng.choice([0, 0, pr.FLAG_STATE_OVERFLOW]),
                                     [int(s) for s in np.asarray(res.scores)])
            board.append(item(pr.RESULT, answer.words()))
            status = pr.StatusAnswer(answer.flags, 0, 0, 0, i + 1, answer.cycles)
            board.append(item(pr.STATUS_ANSWER, status.words()))
        sources[name] = {"samples": len(binned), "host_frames": frames,
                         "input": list(inp.shape), "timesteps": inp.timesteps}
    return Corpus(host, board, sources)


def _stream(corpus, rng):
    """``(direction, [(Frame, bytes), ...])`` of one stream."""
    n = rng.randint(4, 16)
    if rng.random() < 0.5:
        run = rng.choice(corpus.host)
        if len(run) <= n:
            return "host", list(run)
        start = rng.randrange(len(run) - n + 1)
        return "host", run[start:start + n]
    return "board", [rng.choice(corpus.board) for _ in range(n)]


def _mutation(kind, data, a, b, rng):
    """``(start, end, new_bytes)``: replace ``data[start:end]`` in the frame ``a..b``."""
    if kind == "flip":
        width = b - a + 1
        pos = sorted(rng.sample(range(width * 8), rng.randint(1, 8)))
        lo, hi = a + pos[0] // 8, a + pos[-1] // 8
        new = bytearray(data[lo:hi + 1])
        for p in pos:
            new[p // 8 - (lo - a)] ^= 1 << (p % 8)
        return lo, hi + 1, bytes(new)
    if kind == "drop":
        p = rng.randint(a, b)
        return p, min(p + rng.randint(1, 3), b + 1), b""
    if kind == "insert":
        p = rng.randint(a + 1, b)

        def byte():
            r = rng.random()
            return 0x7E if r < 0.25 else 0x7D if r < 0.5 else rng.randrange(256)
        return p, p, bytes(byte() for _ in range(rng.randint(1, 3)))
    if kind == "burst":
        junk = rng.randbytes(rng.randint(4, 64))
        if rng.random() < 0.5:
            p = rng.randint(a + 1, b)
            return p, p, junk
        p = rng.randint(a, b)
        return p, min(p + len(junk), len(data)), junk[:len(data) - p]
    # truncate
    p = rng.randint(a + 1, b)
    return p, b + 1, b""


@dataclass
class Tally:
    """The counts of a run (see the module docstring)."""
    streams: int = 0
    frames_sent: int = 0
    mutated_frames: int = 0
    intact_frames: int = 0
    mutations: dict = field(default_factory=lambda: {k: 0 for k in MUTATIONS})
    accepted: int = 0
    bad_frames: int = 0
    crc_rejects: int = 0
    false_accepts: int = 0
    intact_lost: int = 0
    mutated_recovered: int = 0
    examples: list = field(default_factory=list)


def fuzz_stream(corpus, rng, tally, parsers):
    """Make, mutate and parse one stream; add its counts to ``tally``."""
    direction, items = _stream(corpus, rng)
    spans, data = [], bytearray()
    for _, raw in items:
        spans.append((len(data), len(data) + len(raw) - 1))
        data += raw
    data = bytes(data)
    targets = rng.sample(range(len(items)), min(len(items), rng.randint(1, 4)))
    edits = []
    for j in targets:
        kind = rng.choice(MUTATIONS)
        edits.append((*_mutation(kind, data, *spans[j], rng), kind))
    # apply the edits that do not overlap, from the end (positions stay valid)
    out = bytearray(data)
    touched = set()
    last = len(data) + 1
    for start, end, new, kind in sorted(edits, key=lambda e: (-e[0], -e[1])):
        if end > last or (end == last and start == end):
            continue
        last = start
        out[start:end] = new
        tally.mutations[kind] += 1
        for j, (a, b) in enumerate(spans):
            if (a < start <= b) if start == end else (start <= b and end > a):
                touched.add(j)
    out.append(0x7E)
    parser = parsers[direction]()
    cuts = sorted(rng.randrange(len(out) + 1) for _ in range(rng.randint(0, 2)))
    got, prev = [], 0
    for c in cuts + [len(out)]:
        got += parser.feed(bytes(out[prev:c]))
        prev = c

    sent = {f for f, _ in items}
    intact = [f for j, (f, _) in enumerate(items) if j not in touched]
    k = 0
    for f in got:
        if f not in sent:
            tally.false_accepts += 1
            if len(tally.examples) < 20:
                tally.examples.append({"direction": direction, "sent": data.hex(),
                                       "received": bytes(out).hex(),
                                       "accepted": [f.type, list(f.words)]})
        elif k < len(intact) and f == intact[k]:
            k += 1
        else:
            tally.mutated_recovered += 1
    tally.intact_lost += len(intact) - k
    tally.streams += 1
    tally.frames_sent += len(items)
    tally.mutated_frames += len(touched)
    tally.intact_frames += len(intact)
    tally.accepted += len(got)
    tally.bad_frames += parser.bad_frames
    tally.crc_rejects += getattr(parser, "crc_errors", 0)


def run(frames=1_000_000, seed=0, progress=True, corpus=None, parsers=None):
    """Fuzz until ``frames`` frames were mutated; returns the :class:`Tally`.

    ``parsers`` maps ``"host"`` and ``"board"`` to parser factories (default: the
    codec's :class:`~boards.protocol.Parser` with ``HOST_TYPES`` / ``BOARD_TYPES``).
    """
    from boards import protocol as pr

    rng = random.Random(seed)
    corpus = corpus or build_corpus(rng=random.Random(seed))
    parsers = parsers or {"host": lambda: pr.Parser(pr.HOST_TYPES),
                          "board": lambda: pr.Parser(pr.BOARD_TYPES)}
    tally = Tally()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=frames, unit="frame", desc="mutated frames", file=sys.stderr,
                   mininterval=1.0)
    while tally.mutated_frames < frames:
        before = tally.mutated_frames
        fuzz_stream(corpus, rng, tally, parsers)
        if bar is not None:
            bar.update(tally.mutated_frames - before)
    if bar is not None:
        bar.close()
    return tally


def main(argv=None):
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000,
                    help="stop after this many mutated frames (default 1000000)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", default=str(RESULT), help="JSON file to write")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.frames < 1:
        raise CliError(f"--frames {args.frames}: must be at least 1")
    t0 = time.perf_counter()
    corpus = build_corpus(rng=random.Random(args.seed))
    t1 = time.perf_counter()
    tally = run(args.frames, args.seed, progress=not args.no_progress, corpus=corpus)
    t2 = time.perf_counter()
    from boards import protocol as pr
    result = {
        "command": f"{PROG} --frames {args.frames} --seed {args.seed}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "protocol_version": pr.PROTOCOL_VERSION,
        "crc": "CRC-32/ISO-HDLC",
        "corpus": corpus.sources,
        "seconds": {"corpus": round(t1 - t0, 2), "fuzz": round(t2 - t1, 2)},
        **asdict(tally),
        "expected_false_accepts": {"crc16": tally.crc_rejects / 2 ** 16,
                                   "crc8": tally.crc_rejects / 2 ** 8,
                                   "crc32": tally.crc_rejects / 2 ** 32},
    }
    print(f"{tally.streams:,} streams, {tally.frames_sent:,} frames sent, "
          f"{tally.mutated_frames:,} mutated ({', '.join(f'{k} {v:,}' for k, v in tally.mutations.items())}), "
          f"{tally.intact_frames:,} intact; {t2 - t1:.1f} s")
    print(f"false accepts {tally.false_accepts}, intact frames lost {tally.intact_lost}; "
          f"bad frames {tally.bad_frames:,}, CRC rejects {tally.crc_rejects:,} (CRC-16 would "
          f"have let about {tally.crc_rejects / 2 ** 16:.2f} through, CRC-8 about "
          f"{tally.crc_rejects / 2 ** 8:.0f}); mutated frames accepted unchanged "
          f"{tally.mutated_recovered:,}")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if tally.false_accepts == 0 and tally.intact_lost == 0 else 1


if __name__ == "__main__":
    run_main(main, prog=PROG)

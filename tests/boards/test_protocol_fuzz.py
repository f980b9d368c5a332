"""A fast, seeded slice of the protocol fuzz benchmark (bench/protocol_fuzz.py)."""

import random
from dataclasses import asdict

import pytest

from bench import protocol_fuzz as fz
from boards import protocol as pr


@pytest.fixture(scope="module")
def corpus():
    return fz.build_corpus({"digits": 6, "gesture_synth": 1}, rng=random.Random(3))


def test_fast_slice_no_false_accept_no_intact_frame_lost(corpus):
    tally = fz.run(4000, seed=5, progress=False, corpus=corpus)
    assert tally.mutated_frames >= 4000
    assert tally.false_accepts == 0, tally.examples[:3]
    assert tally.intact_lost == 0
    assert all(n > 0 for n in tally.mutations.values())
    # the mutations did reach the checks, the CRC among them
    assert tally.bad_frames >= tally.mutated_frames // 2 and tally.crc_rejects > 0
    assert tally.accepted >= tally.intact_frames


def test_the_same_seed_gives_the_same_run(corpus):
    a = fz.run(500, seed=9, progress=False, corpus=corpus)
    b = fz.run(500, seed=9, progress=False, corpus=corpus)
    c = fz.run(500, seed=10, progress=False, corpus=corpus)
    assert asdict(a) == asdict(b) and asdict(a) != asdict(c)


class NoCrcParser:
    """Checks type and length only, byte by byte: the fuzzer must catch its false accepts."""

    def __init__(self, accept):
        self.accept = accept
        self.bad_frames = 0
        self.body, self.esc = bytearray(), False

    def feed(self, chunk):
        out = []
        for b in chunk:
            if b == pr.FLAG:
                body, self.body, esc, self.esc = bytes(self.body), bytearray(), self.esc, False
                if not body:
                    continue
                ok = (not esc and len(body) >= pr.MIN_BODY and body[0] in self.accept
                      and self.accept[body[0]][0] <= body[1] <= self.accept[body[0]][1]
                      and len(body) == pr.MIN_BODY + 4 * body[1])
                if ok:
                    out.append(pr.Frame(body[0], tuple(
                        int.from_bytes(body[2 + 4 * i:6 + 4 * i], "little")
                        for i in range(body[1]))))
                else:
                    self.bad_frames += 1
            elif b == pr.ESC and not self.esc:
                self.esc = True
            else:
                self.body.append(b ^ pr.ESC_XOR if self.esc else b)
                self.esc = False
        return out


class LossyParser(pr.Parser):
    """The codec's parser that forgets every 5th good frame."""

    def feed(self, chunk):
        got = super().feed(chunk)
        first = self.frames - len(got) + 1
        return [f for i, f in enumerate(got, first) if i % 5]


def test_the_counts_can_fail(corpus):
    weak = fz.run(1500, seed=6, progress=False, corpus=corpus,
                  parsers={"host": lambda: NoCrcParser(pr.HOST_TYPES),
                           "board": lambda: NoCrcParser(pr.BOARD_TYPES)})
    assert weak.false_accepts > 0 and weak.examples
    lossy = fz.run(1500, seed=6, progress=False, corpus=corpus,
                   parsers={"host": lambda: LossyParser(pr.HOST_TYPES),
                            "board": lambda: LossyParser(pr.BOARD_TYPES)})
    assert lossy.intact_lost > 0 and lossy.false_accepts == 0

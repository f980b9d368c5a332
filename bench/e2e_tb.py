"""cocotb benches of the end-to-end benchmark (:mod:`bench.e2e`); imports cocotb.

The case file (``TB_CASE``, JSON) is written by :mod:`bench.e2e`; the bench writes its
observations to ``case["out"]`` (JSON) and compares nothing itself: the comparison with
the reference and the cycle model happens in :mod:`bench.e2e`.

``uart``  (toplevel :class:`boards.top.BoardTop`)
    For every sample the host-side bytes (``case["bytes"][i]``: the EVENTS frames that
    :func:`boards.protocol.words_to_frames` makes of
    :func:`boards.protocol.sample_words`) are bit-banged onto the ``rx`` pin at
    ``divisor`` clock cycles per bit (start bit, 8 data bits LSB first, stop bit, bytes
    back to back); the ``tx`` pin is decoded byte by byte (sampled in the middle of each
    bit) and fed to :class:`boards.protocol.Parser`. The next sample is sent when the
    ``RESULT`` of the previous one has arrived (as ``boards.host`` does). Before the
    samples a ``VERSION`` frame is sent and its answer recorded; after them a ``STATUS``.

``stream``  (toplevel :class:`hw.network.Network`)
    The packed input words of every sample are offered back to back on ``inp`` (one per
    cycle while ``ready``); after the ``done`` strobe the bench waits for ``idle`` and
    sends the next sample. Recorded per sample: the value of the network's ``cycle``
    counter in the cycle of the first offer and in the cycle of ``done``, the scores and
    the prediction.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, ReadOnly, RisingEdge, Timer

from boards import protocol as pr

PERIOD_NS = 10


def _case():
    with open(os.environ["TB_CASE"]) as f:
        return json.load(f)


def _write(case, obj):
    with open(case["out"], "w") as f:
        json.dump(obj, f)


@cocotb.test()
async def uart(dut):
    case = _case()
    div = int(case["divisor"])
    bit_ns = div * PERIOD_NS
    dut.rx.value = 1
    dut.button.value = 0
    dut.rst.value = 1
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    for _ in range(4):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    for _ in range(4):
        await FallingEdge(dut.clk)

    parser = pr.Parser(pr.BOARD_TYPES)
    answers = []          # (type, words, sim time ns)
    got = Event()

    async def tx_monitor():
        while True:
            await FallingEdge(dut.tx)
            await Timer(bit_ns + bit_ns // 2, unit="ns")
            byte = 0
            for i in range(8):
                byte |= int(dut.tx.value) << i
                await Timer(bit_ns, unit="ns")
            # now in the stop bit
            for fr in parser.feed(bytes([byte])):
                answers.append((fr.type, list(fr.words), cocotb.utils.get_sim_time("ns")))
                got.set()

    cocotb.start_soon(tx_monitor())

    async def send(data):
        for b in data:
            for level in (0, *[(b >> i) & 1 for i in range(8)], 1):
                dut.rx.value = level
                await Timer(bit_ns, unit="ns")

    async def wait_answer(ftype, limit_ns):
        t0 = cocotb.utils.get_sim_time("ns")
        while True:
            for j, a in enumerate(answers):
                if a[0] == ftype:
                    return answers.pop(j)
            got.clear()
            now = cocotb.utils.get_sim_time("ns")
            if now - t0 > limit_ns:
                return None
            await cocotb.triggers.First(got.wait(), Timer(limit_ns, unit="ns"))

    out = {"samples": [], "version": None, "status": None, "timeouts": 0}
    await send(pr.encode_frame(pr.VERSION))
    a = await wait_answer(pr.VERSION_ANSWER, 200_000)
    out["version"] = a[1] if a else None
    limit_ns = int(case.get("answer_limit_cycles", 2_000_000)) * PERIOD_NS
    for i, hexbytes in enumerate(case["bytes"]):
        data = bytes.fromhex(hexbytes)
        t_start = cocotb.utils.get_sim_time("ns")
        await send(data)
        t_sent = cocotb.utils.get_sim_time("ns")
        a = await wait_answer(pr.RESULT, limit_ns)
        if a is None:
            out["timeouts"] += 1
            out["samples"].append(None)
            continue
        out["samples"].append({"words": a[1], "t_start_ns": t_start, "t_sent_ns": t_sent,
                               "t_answer_ns": a[2], "bytes": len(data)})
    await send(pr.encode_frame(pr.STATUS))
    a = await wait_answer(pr.STATUS_ANSWER, 200_000)
    out["status"] = a[1] if a else None
    out["sim_ns"] = cocotb.utils.get_sim_time("ns")
    _write(case, out)


@cocotb.test()
async def stream(dut):
    case = _case()
    nc, sbits, signed = case["n_classes"], case["score_bits"], case["score_signed"]
    dut.inp__valid.value = 0
    dut.clear.value = 0
    dut.rst.value = 1
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    out = {"samples": []}
    limit = int(case.get("max_cycles", 1_000_000))
    for words in case["words"]:
        await FallingEdge(dut.clk)
        await ReadOnly()
        first = int(dut.cycle.value)
        await FallingEdge(dut.clk)
        start = None
        for w in words:
            dut.inp__payload.value = w
            dut.inp__valid.value = 1
            await ReadOnly()
            if start is None:
                start = int(dut.cycle.value)
            while not int(dut.inp__ready.value):
                await FallingEdge(dut.clk)
                await ReadOnly()
            await FallingEdge(dut.clk)
        dut.inp__valid.value = 0
        # wait for the done strobe (registered: it rises just after a clock edge)
        waited = 0
        while True:
            await ReadOnly()
            if int(dut.done.value):
                break
            await RisingEdge(dut.clk)
            waited += 1
            if waited > limit:
                raise AssertionError("timeout waiting for done")
        done = int(dut.cycle.value)
        await RisingEdge(dut.clk)      # prediction is registered in the cycle of done
        await ReadOnly()
        raw = int(dut.scores.value)
        sc = [(raw >> (c * sbits)) & ((1 << sbits) - 1) for c in range(nc)]
        if signed:
            sc = [v - (1 << sbits) if v >> (sbits - 1) else v for v in sc]
        pred = int(dut.prediction.value)
        while not int(dut.idle.value):
            await RisingEdge(dut.clk)
            await ReadOnly()
        out["samples"].append({"start": start, "done": done, "scores": sc, "prediction": pred,
                               "before": first})
    _write(case, out)

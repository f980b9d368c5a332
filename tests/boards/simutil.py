"""Small helpers for amaranth.sim testbenches of the board blocks (streams, UART lines)."""

from amaranth.sim import Simulator


def run_sim(dut, *testbenches, processes=(), vcd=None):
    """Simulate ``dut`` at a 100 MHz clock with the given async testbenches."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    for p in processes:
        sim.add_process(p)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


async def stream_send(ctx, st, items, rng=None, p_idle=0.0):
    """Drive ``items`` into stream ``st`` (the DUT is the sink), idling at random."""
    for item in items:
        while rng is not None and rng.random() < p_idle:
            ctx.set(st.valid, 0)
            await ctx.tick()
        ctx.set(st.valid, 1)
        ctx.set(st.payload, item)
        await ctx.tick().until(st.ready)
    ctx.set(st.valid, 0)


async def stream_recv(ctx, st, n, rng=None, p_stall=0.0, max_stall=None, timeout=None):
    """Take ``n`` items from stream ``st`` (the DUT is the source), stalling at random.

    Returns the list of payloads (as ints, or as the payload's value for structured
    payloads). Stops early after ``timeout`` cycles without progress.
    """
    out = []
    idle = 0
    stall = 0
    while len(out) < n:
        stall_now = (rng is not None and rng.random() < p_stall
                     and (max_stall is None or stall < max_stall))
        stall = stall + 1 if stall_now else 0
        ctx.set(st.ready, 0 if stall_now else 1)
        _, _, valid, payload = await ctx.tick().sample(st.valid, st.payload)
        if valid and not stall_now:
            out.append(payload)
            idle = 0
        else:
            idle += 1
            if timeout is not None and idle > timeout:
                break
    ctx.set(st.ready, 0)
    return out


async def uart_drive(ctx, line, data, divisor, stop_bits=None, gap=0, bit_cycles=None):
    """Bit-bang bytes ``data`` onto ``line`` (8N1, LSB first).

    ``stop_bits[i]`` is the stop bit value of byte ``i`` (1 normally, 0 for a framing
    error); ``gap`` idle bit times follow each byte; ``bit_cycles`` overrides the bit
    length (to test a mismatched sender).
    """
    bit_cycles = bit_cycles or divisor
    for i, byte in enumerate(data):
        stop = 1 if stop_bits is None else stop_bits[i]
        for b in [0] + [(byte >> k) & 1 for k in range(8)] + [stop]:
            ctx.set(line, b)
            await ctx.tick().repeat(bit_cycles)
        ctx.set(line, 1)
        if gap:
            await ctx.tick().repeat(gap * bit_cycles)
    ctx.set(line, 1)


async def uart_capture(ctx, line, divisor, out, stop):
    """Decode 8N1 bytes from ``line`` into the list ``out`` until ``stop()`` is true."""
    while not stop():
        if ctx.get(line):
            await ctx.tick()
            continue
        await ctx.tick().repeat(divisor // 2)        # middle of the start bit
        byte = 0
        for k in range(8):
            await ctx.tick().repeat(divisor)
            byte |= ctx.get(line) << k
        await ctx.tick().repeat(divisor)
        assert ctx.get(line) == 1, "stop bit low on the board's tx line"
        out.append(byte)


def host_against_board(board, model, samples, root, timeout):
    """Run the host tool (``--model``, ``--json``) against ``board`` served on a pty.

    ``samples`` is a list of ``(events, label)``; they and the model are written under
    ``root``. Returns the exit status and the JSON the tool wrote (``None`` when it
    wrote none).
    """
    import json

    from boards.host import main
    from sim.events import save_events
    from sim.model import save_model

    (root / "ev").mkdir()
    for i, (ev, label) in enumerate(samples):
        save_events(root / "ev" / f"{i}.npz", ev, label=label)
    save_model(model, root / "model")
    path, stop = board.serve()
    try:
        rc = main(["--port", path, "--events", str(root / "ev"), "--model", str(root / "model"),
                   "--timeout", str(timeout), "--json", str(root / "out.json")])
    finally:
        stop()
    out = root / "out.json"
    return rc, json.loads(out.read_text()) if out.exists() else None


def assert_answers_equal_reference(res, refs):
    """Every answer in the host tool's JSON ``res`` equals the reference results ``refs``
    (prediction and every score), each took some cycles, and the board counted them."""
    assert [r["prediction"] for r in res["samples"]] == [int(r.prediction) for r in refs]
    assert [r["scores"] for r in res["samples"]] == [[int(s) for s in r.scores] for r in refs]
    assert all(r["cycles"] > 10 for r in res["samples"])
    assert all(r["matches_reference"] for r in res["samples"])
    assert res["summary"]["status"]["samples"] == len(refs)

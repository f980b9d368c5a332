"""Host tool <-> the Python board emulator, end to end over a pseudo-terminal."""

import json

import numpy as np
import pytest

from boards import protocol as pr
from boards.emulator import BoardEmulator, serve_pty
from boards.host import main
from sim.events import bin_events, make_events, save_events
from sim.model import save_model
from sim.randmodel import random_model
from sim.reference import run as reference_run


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(22)    # a random model whose predictions vary
    return random_model(rng, input_shape=(2, 9, 11), kinds=["conv2d", "linear"], timesteps=5,
                        count_clip=2, readout="spike_count")


@pytest.fixture
def board(model):
    emu = BoardEmulator(model)
    path, stop = serve_pty(emu)
    yield emu, path
    stop()


def write_samples(root, model, n, rng, labels=True):
    inp = model.input
    root.mkdir()
    samples = []
    for i in range(n):
        ev = make_events(inp.shape, int(rng.integers(0, 400)), inp.dt_us * (inp.timesteps + 2),
                         rng, t0=1_600_000_000_000_000)
        label = None
        if labels:
            # half the labels agree with the model, so that accuracy is neither 0 nor 1
            binned = bin_events(ev, inp.shape, inp.timesteps, inp.dt_us, inp.count_clip)
            label = (reference_run(model, binned, record=False).prediction if i % 2 == 0
                     else int(rng.integers(0, model.n_classes)))
        save_events(root / f"s{i:03d}.npz", ev, label=label)
        samples.append((ev, label))
    return samples


def test_end_to_end_predictions_equal_reference(tmp_path, model, board, capsys):
    emu, path = board
    rng = np.random.default_rng(5)
    samples = write_samples(tmp_path / "ev", model, 6, rng)
    save_model(model, tmp_path / "model")
    out_json = tmp_path / "res.json"
    rc = main(["--port", path, "--events", str(tmp_path / "ev"), "--model",
               str(tmp_path / "model"), "--json", str(out_json), "--timeout", "10"])
    text = capsys.readouterr().out
    assert rc == 0, text
    res = json.loads(out_json.read_text())
    inp = model.input
    expect_correct = 0
    for (ev, label), rec in zip(samples, res["samples"]):
        ref = reference_run(model, bin_events(ev, inp.shape, inp.timesteps, inp.dt_us,
                                              inp.count_clip), record=False)
        assert rec["prediction"] == ref.prediction
        assert rec["scores"] == [int(s) for s in ref.scores]
        assert rec["label"] == label and rec["matches_reference"]
        expect_correct += ref.prediction == label
    assert res["summary"]["accuracy"] == pytest.approx(expect_correct / len(samples))
    assert f"accuracy {expect_correct / len(samples):.4f}" in text
    assert "6/6 answers equal" in text
    assert len({r["prediction"] for r in res["samples"]}) > 1     # a test that can fail
    assert res["summary"]["status"]["samples"] == 6
    assert res["summary"]["status"]["flags"] & pr.LINK_ERROR_FLAGS == 0
    assert len(emu.results) == 6


def test_without_model_uses_board_version(tmp_path, model, board, capsys):
    emu, path = board
    rng = np.random.default_rng(6)
    write_samples(tmp_path / "ev", model, 2, rng, labels=False)
    rc = main(["--port", path, "--events", str(tmp_path / "ev" / "s001.npz")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert f"T={model.input.timesteps}" in text and "accuracy" not in text
    assert len(emu.results) == 1


def test_out_of_range_event_sends_nothing(tmp_path, model, board, capsys):
    emu, path = board
    P, H, W = model.input.shape
    rng = np.random.default_rng(7)
    write_samples(tmp_path / "ev", model, 2, rng)
    ev = make_events(model.input.shape, 10, 1000, rng)
    ev["x"][4] = W                                       # one column too far
    save_events(tmp_path / "ev" / "s999.npz", ev, label=0)
    save_model(model, tmp_path / "model")
    rc = main(["--port", path, "--events", str(tmp_path / "ev"), "--model",
               str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "s999.npz" in err and f"x={W}" in err
    assert emu.parser.frames == 0 and emu.parser.bad_frames == 0   # nothing reached the board
    # without --model only the VERSION query goes out, no events
    rc = main(["--port", path, "--events", str(tmp_path / "ev")])
    assert rc == 2 and emu.parser.frames == 1 and emu.results == []


def test_model_mismatch_and_bad_arguments(tmp_path, model, board, capsys):
    emu, path = board
    rng = np.random.default_rng(8)
    write_samples(tmp_path / "ev", model, 1, rng)
    other = random_model(np.random.default_rng(99), input_shape=model.input.shape,
                         kinds=["linear"], timesteps=model.input.timesteps)
    save_model(other, tmp_path / "other")
    assert main(["--port", path, "--events", str(tmp_path / "ev"), "--model",
                 str(tmp_path / "other")]) == 1
    assert "model id" in capsys.readouterr().err and emu.results == []
    assert main(["--port", path, "--events", str(tmp_path / "nope")]) == 2
    save_model(model, tmp_path / "model")   # a 2x9x11 sensor: digits cannot feed it
    assert main(["--port", path, "--dataset", "digits", "--model", str(tmp_path / "model")]) == 2
    assert main(["--port", path, "--events", str(tmp_path / "ev"), "--board", "zedboard"]) == 2
    assert main(["--port", str(tmp_path / "no-such-tty"), "--events",
                 str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "--dataset digits" in err and "[1, 8, 8]" in err
    assert "no-such-tty" in err
    assert "zedboard" in err and "arty_a7" in err


def test_loop_url_without_board_times_out(tmp_path, model, capsys):
    # loop:// echoes the host's own frames, which a host does not accept as answers
    rng = np.random.default_rng(9)
    write_samples(tmp_path / "ev", model, 1, rng)
    rc = main(["--port", "loop://", "--events", str(tmp_path / "ev"), "--timeout", "0.3"])
    assert rc == 1 and "no VERSION answer" in capsys.readouterr().err


def test_emulator_flags(model):
    emu = BoardEmulator(model)
    P, H, W = model.input.shape
    T = model.input.timesteps
    # a corrupted frame, an out-of-range event, too few end-of-step tokens
    bad = bytearray(pr.encode_frame(pr.EVENTS, [pr.event_word(0, 0, 0)]))
    bad[3] ^= 1
    words = [pr.event_word(0, H - 1, W), *[pr.end_step_word(k) for k in range(T - 1)],
             pr.end_sample_word(3)]
    answer = emu.feed(bytes(bad) + pr.words_to_frames(words))
    res = pr.decode_answer(pr.Parser(pr.BOARD_TYPES).feed(answer)[0])
    assert res.sample_id == 3
    assert res.flags == pr.FLAG_BAD_FRAME | pr.FLAG_EVENT_RANGE | pr.FLAG_SEQUENCE
    status = pr.decode_answer(pr.Parser(pr.BOARD_TYPES).feed(
        emu.feed(pr.encode_frame(pr.STATUS)))[0])
    assert (status.bad_frames, status.samples) == (1, 1)
    status = pr.decode_answer(pr.Parser(pr.BOARD_TYPES).feed(
        emu.feed(pr.encode_frame(pr.RESET)))[0])
    assert (status.flags, status.bad_frames, status.samples) == (0, 0, 0)


def test_dataset_digits_with_the_shipped_model(tmp_path, capsys):
    from pathlib import Path

    from sim.datasets import load_dataset
    from sim.model import load_model
    root = Path(__file__).resolve().parents[2]
    model = load_model(root / "models" / "digits")
    emu = BoardEmulator(model)
    path, stop = serve_pty(emu)
    try:
        out_json = tmp_path / "res.json"
        rc = main(["--port", path, "--dataset", "digits", "--limit", "8", "--model",
                   str(root / "models" / "digits"), "--json", str(out_json), "--timeout", "10"])
    finally:
        stop()
    assert rc == 0, capsys.readouterr().err
    res = json.loads(out_json.read_text())
    inp = model.input
    data = load_dataset("digits", "test", timesteps=inp.timesteps, dt_us=inp.dt_us, limit=8)
    assert len(res["samples"]) == 8
    for i, rec in enumerate(res["samples"]):
        ev, label = data.sample(i)
        ref = reference_run(model, bin_events(ev, inp.shape, inp.timesteps, inp.dt_us,
                                              inp.count_clip), record=False)
        assert rec["label"] == label
        assert rec["prediction"] == ref.prediction
        assert rec["scores"] == [int(v) for v in ref.scores]


def stubborn_board(model, period=0.2):
    """A board on a pty that answers VERSION, RESET and STATUS, and once events arrive
    sends a RESULT with a wrong sample id every ``period`` seconds, forever."""
    import os
    import select
    import time

    from boards.emulator import run_on_pty

    version = pr.VersionAnswer.for_model(model)
    wrong = pr.ResultAnswer(0xBEEF, 0, 0, 0, [0] * model.n_classes).encode()
    sent = []

    def make_worker(master, stopping):
        def loop():
            parser = pr.Parser(pr.HOST_TYPES)
            streaming, next_result = False, 0.0
            while not stopping.is_set():
                if select.select([master], [], [], 0.02)[0]:
                    try:
                        data = os.read(master, 4096)
                    except OSError:
                        return
                    for f in parser.feed(data):
                        if f.type == pr.VERSION:
                            os.write(master, version.encode())
                        elif f.type in (pr.RESET, pr.STATUS):
                            os.write(master, pr.StatusAnswer(0, 0, 0, 0, 0, 0).encode())
                        else:
                            streaming = True
                if streaming and time.monotonic() >= next_result:
                    os.write(master, wrong)
                    sent.append(time.monotonic())
                    next_result = time.monotonic() + period
        return loop

    path, stop = run_on_pty(make_worker)
    return path, stop, sent


def test_timeout_bounds_the_whole_wait(tmp_path, model, capsys):
    import time
    rng = np.random.default_rng(10)
    write_samples(tmp_path / "ev", model, 1, rng)
    path, stop, sent = stubborn_board(model)
    try:
        t0 = time.monotonic()
        rc = main(["--port", path, "--events", str(tmp_path / "ev"), "--timeout", "2"])
        elapsed = time.monotonic() - t0
    finally:
        stop()
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "no RESULT answer for sample 0" in err and "2 s" in err
    # the board kept talking (a per-frame deadline would never have expired) ...
    assert len(sent) >= 5
    # ... and the wait still ended after the timeout
    assert 2 <= elapsed < 6


@pytest.mark.parametrize("option,value,message", [
    ("--timeout", "-1", "--timeout -1: must be a positive number of seconds"),
    ("--timeout", "0", "--timeout 0: must be a positive number of seconds"),
    ("--timeout", "nan", "--timeout nan: must be a positive number of seconds"),
    ("--timeout", "inf", "--timeout inf: must be a positive number of seconds"),
    ("--limit", "-5", "--limit -5: must be at least 1"),
    ("--limit", "0", "--limit 0: must be at least 1"),
    ("--baud", "0", "--baud 0: must be positive"),
])
def test_meaningless_option_values(tmp_path, model, board, capsys, option, value, message):
    emu, path = board
    write_samples(tmp_path / "ev", model, 1, np.random.default_rng(11))
    rc = main(["--port", path, "--events", str(tmp_path / "ev"), option, value])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"python -m boards.host: error: {message}\n"
    assert emu.parser.frames == 0 and emu.parser.bad_frames == 0     # nothing was sent


def test_limit_takes_the_first_files(tmp_path, model, board, capsys):
    emu, path = board
    write_samples(tmp_path / "ev", model, 3, np.random.default_rng(12))
    out_json = tmp_path / "res.json"
    rc = main(["--port", path, "--events", str(tmp_path / "ev"), "--limit", "2", "--json",
               str(out_json)])
    assert rc == 0, capsys.readouterr().err
    assert [r["sample"] for r in json.loads(out_json.read_text())["samples"]] == \
        ["s000.npz", "s001.npz"]
    assert len(emu.results) == 2


def test_emulator_command_line_bad_model(tmp_path, capsys):
    from boards.emulator import main as emulator_main
    from sim.cli import main_guard
    rc = main_guard(emulator_main, ["--model", str(tmp_path / "missing")],
                    prog="python -m boards.emulator")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing" in err


def test_board_of_an_older_protocol_is_named(tmp_path, model, capsys):
    # a board that answers VERSION with a frame of protocol 1 (CRC-8, one CRC byte)
    import os
    import select

    from boards.emulator import run_on_pty

    def crc8(body):
        crc = 0
        for b in body:
            crc ^= b
            for _ in range(8):
                crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        return crc

    words = pr.VersionAnswer.for_model(model).words()
    body = bytes([pr.VERSION_ANSWER, len(words)]) + b"".join(
        w.to_bytes(4, "little") for w in words)
    body += bytes([crc8(body)])
    old = bytes([pr.FLAG]) + body.replace(b"\x7d", b"\x7d\x5d").replace(b"\x7e", b"\x7d\x5e") \
        + bytes([pr.FLAG])

    def make_worker(master, stopping):
        def loop():
            while not stopping.is_set():
                if select.select([master], [], [], 0.02)[0]:
                    try:
                        os.read(master, 4096)
                        os.write(master, old)
                    except OSError:
                        return
        return loop

    write_samples(tmp_path / "ev", model, 1, np.random.default_rng(13))
    path, stop = run_on_pty(make_worker)
    try:
        rc = main(["--port", path, "--events", str(tmp_path / "ev"), "--timeout", "0.5"])
    finally:
        stop()
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert "no VERSION answer" in err and "1 malformed frames" in err and "rebuilt" in err

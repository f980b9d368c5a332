"""End to end without a board: the host tool talks through a pseudo-terminal to the RTL
board top (UART, protocol, input checks, the generated network) in simulation, and its
answers equal the NumPy reference."""

import json

import numpy as np

from boards.host import main
from boards.simboard import SimBoard
from sim.events import bin_events, make_events, save_events
from sim.model import save_model
from sim.randmodel import model_from_spec
from sim.reference import run as reference_run


def test_host_against_rtl_board_top(tmp_path, capsys):
    rng = np.random.default_rng(3)
    model = model_from_spec([("conv2d", 2, 3, 2, 1), ("linear", 4)], rng, input_shape=(2, 5, 5),
                            timesteps=3, thresholds=[150, 300])
    inp = model.input
    (tmp_path / "ev").mkdir()
    refs = []
    erng = np.random.default_rng(8)
    for i in range(4):
        ev = make_events(inp.shape, 40, 3000, erng)
        save_events(tmp_path / "ev" / f"{i}.npz", ev, label=i % 4)
        refs.append(reference_run(model, bin_events(ev, inp.shape, 3, inp.dt_us), record=False))
    # the samples are not all alike (a test that could fail on a wrong arg-max or score)
    assert len({tuple(int(s) for s in r.scores) for r in refs}) > 1
    save_model(model, tmp_path / "model")
    board = SimBoard(model, divisor=4)                 # BoardTop: HostLink + Network
    assert board.top is not None
    path, stop = board.serve()
    try:
        rc = main(["--port", path, "--events", str(tmp_path / "ev"), "--model",
                   str(tmp_path / "model"), "--timeout", "120", "--json",
                   str(tmp_path / "out.json")])
    finally:
        stop()
    text = capsys.readouterr().out
    assert rc == 0, text
    res = json.loads((tmp_path / "out.json").read_text())
    assert [r["prediction"] for r in res["samples"]] == [int(r.prediction) for r in refs]
    assert [r["scores"] for r in res["samples"]] == [[int(s) for s in r.scores] for r in refs]
    assert all(r["cycles"] > 10 for r in res["samples"])
    assert res["summary"]["status"]["samples"] == 4
    assert res["summary"]["status"]["flags"] == 0
    assert "4/4 answers equal" in text
    # the LEDs show the last prediction (4 classes: two LEDs) and "a result was sent"
    plan = board.top.plan
    assert board.leds & 3 == int(refs[-1].prediction)
    assert board.leds >> plan.index("result") & 1 == 1

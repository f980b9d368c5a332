"""The host tool against the board's RTL link in simulation (reference as the network)."""

import json

import numpy as np

from boards.host import main
from boards.simboard import SimBoard
from sim.events import bin_events, make_events, save_events
from sim.model import save_model
from sim.randmodel import model_from_spec
from sim.reference import run as reference_run


def test_host_against_simulated_link(tmp_path, capsys):
    rng = np.random.default_rng(12)
    model = model_from_spec([("conv2d", 2, 3, 2, 1), ("linear", 4)], rng, input_shape=(2, 5, 5),
                            timesteps=3, thresholds=[3, 2])
    inp = model.input
    (tmp_path / "ev").mkdir()
    refs = []
    for i in range(3):
        ev = make_events(inp.shape, 25, 3000, rng)
        save_events(tmp_path / "ev" / f"{i}.npz", ev, label=i % 4)
        refs.append(reference_run(model, bin_events(ev, inp.shape, 3, inp.dt_us), record=False))
    save_model(model, tmp_path / "model")
    board = SimBoard(model, divisor=4, network="reference")
    path, stop = board.serve()
    try:
        rc = main(["--port", path, "--events", str(tmp_path / "ev"), "--model",
                   str(tmp_path / "model"), "--timeout", "60", "--json",
                   str(tmp_path / "out.json")])
    finally:
        stop()
    text = capsys.readouterr().out
    assert rc == 0, text
    res = json.loads((tmp_path / "out.json").read_text())
    assert [r["prediction"] for r in res["samples"]] == [r.prediction for r in refs]
    assert [r["scores"] for r in res["samples"]] == [[int(s) for s in r.scores] for r in refs]
    # the RTL counted cycles from each sample's first word to its result
    assert all(r["cycles"] > 10 for r in res["samples"])
    assert res["summary"]["status"]["samples"] == 3
    assert "3/3 answers equal" in text

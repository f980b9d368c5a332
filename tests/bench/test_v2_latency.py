"""bench.v2_latency: bad input is a one-line error with exit status 2 and nothing
written; the digits figures are the RTL's (the per-sample cycles ``bench.e2e`` measured
on the generated Verilog, dense sweep, recorded in bench/results/e2e.json); a partial
run keeps the file's other entries."""

import json
from pathlib import Path

import pytest

from bench.v2_latency import CLOCK_HZ, main
from sim.cli import main_guard
from sim.model import load_model

ROOT = Path(__file__).resolve().parents[2]
PROG = "python -m bench.v2_latency"


@pytest.mark.parametrize("args, words", [
    (["--samples", "0"], ["--samples", "0"]),
    (["--digits-limit", "0"], ["--digits-limit", "0"]),
    (["--only", "nope"], ["--only", "nope"]),
])
def test_bad_input(tmp_path, capsys, args, words):
    out = tmp_path / "lat.json"
    try:
        rc = main_guard(main, [*args, "--out", str(out)], prog=PROG)
    except SystemExit as e:             # argparse's own refusals (a bad choice)
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert all(w in err for w in words), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_out(tmp_path, capsys):
    rc = main_guard(main, ["--only", "digits", "--out", str(tmp_path / "no" / "x.json")],
                    prog=PROG)
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    rc = main_guard(main, ["--only", "digits", "--out", str(bad)], prog=PROG)
    assert rc == 2 and "not a JSON file" in capsys.readouterr().err
    assert bad.read_text() == "{"


def test_digits_equals_rtl_and_keeps_entries(tmp_path):
    e2e = json.loads((ROOT / "bench" / "results" / "e2e.json").read_text())
    rtl = [s["stream"]["latency_cycles"] for s in e2e["samples"][:3]]
    out = tmp_path / "lat.json"
    out.write_text(json.dumps({"models": {"kept": {"x": 1}}}))
    assert main(["--only", "digits", "--digits-limit", "3", "--sweep-mode", "dense",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["models"] == {"kept": {"x": 1}}
    d = doc["digits"]["sweeps"]["dense"]
    assert d["samples"] == 3
    assert d["latency_cycles_mean"] == sum(rtl) / 3
    assert (d["latency_cycles_min"], d["latency_cycles_max"]) == (min(rtl), max(rtl))
    assert d["latency_us_mean"] == pytest.approx(sum(rtl) / 3 / CLOCK_HZ * 1e6)
    inp = load_model(ROOT / "models" / "digits").input
    stream_s = inp.timesteps * inp.dt_us * 1e-6
    assert d["real_time_factor"] == pytest.approx(stream_s * CLOCK_HZ * 3 / sum(rtl))
    assert doc["command"].endswith("--sweep-mode dense") and str(out) not in doc["command"]

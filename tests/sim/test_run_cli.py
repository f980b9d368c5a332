"""``python -m sim.run``: output, the reference dump against the oracle, bad input.

Also the shared CLI helpers of :mod:`sim.cli` (one-line errors, atomic outputs).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim import cli
from sim.events import EVENT_DTYPE, load_events, make_events, save_events
from sim.model import load_model, save_model
from sim.randmodel import random_model
from sim.reference import available_backends
from sim.run import PROG, main, write_dump

from . import oracle

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "sim.run", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small random model (every layer type) and a sample with drops and clipping."""
    d = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(11)
    model = random_model(rng, input_shape=(2, 6, 6), kinds=["conv2d", "sumpool2d", "linear"],
                         timesteps=5, count_clip=2, readout="spike_count", fire_scale=0.5)
    save_model(model, d / "model")
    ev = make_events((2, 6, 6), 300, 7000, rng, t0=1_700_000_000_000_000)
    save_events(d / "sample.npz", ev, label=1)
    return d


def oracle_of(files):
    model = load_model(files / "model")
    ev, _ = load_events(files / "sample.npz")
    inp = model.input
    steps, dropped, clipped = oracle.bin_events(ev, inp.shape, inp.timesteps, inp.dt_us,
                                                inp.count_clip)
    assert dropped > 0 and clipped > 0, "the sample should exercise dropping and clipping"
    return model, oracle.run(model, steps), dropped


def check_dump(path, model, want):
    T = model.input.timesteps
    with np.load(path) as z:
        names = {"scores", "prediction"}
        for layer in model.layers:
            n = layer.name
            names |= {f"spikes_{n}", f"state_{n}", f"overflow_{n}"}
            assert z[f"spikes_{n}"].dtype == np.uint8
            assert z[f"spikes_{n}"].shape == (T, *layer.out_shape)
            assert np.issubdtype(z[f"state_{n}"].dtype, np.signedinteger)
            assert z[f"state_{n}"].shape == (T, *layer.out_shape)
            assert z[f"overflow_{n}"].dtype == np.bool_ and z[f"overflow_{n}"].shape == (T,)
            assert z[f"spikes_{n}"].reshape(T, -1).tolist() == want["spikes"][n]
            assert z[f"state_{n}"].reshape(T, -1).tolist() == want["states"][n]
            assert z[f"overflow_{n}"].tolist() == want["overflow"][n]
        assert set(z.files) == names
        assert np.issubdtype(z["scores"].dtype, np.integer)
        assert z["scores"].tolist() == want["scores"]
        assert z["prediction"].shape == () and int(z["prediction"]) == want["prediction"]


@pytest.mark.parametrize("backend", available_backends())
def test_run_and_dump_match_oracle(files, tmp_path, backend):
    model, want, dropped = oracle_of(files)
    assert sum(map(sum, want["spikes"][model.layers[1].name])) > 0, "spikes must reach layer 2"
    dump = tmp_path / "out.npz"
    r = run_cli("--model", files / "model", "--events", files / "sample.npz", "--dump", dump,
                "--backend", backend)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert lines["prediction"] == str(want["prediction"])
    assert lines["scores"].split() == [str(s) for s in want["scores"]]
    for layer in model.layers:
        assert f"{layer.name} {sum(map(sum, want['spikes'][layer.name]))}" in lines["spikes"]
    assert f"{dropped} dropped" in lines["events"] and "label 1" in lines["events"]
    assert "events/s" in lines["speed"] and backend in lines["speed"]
    check_dump(dump, model, want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_json_summary_and_dump_name_without_suffix(files, tmp_path):
    model, want, dropped = oracle_of(files)
    dump = tmp_path / "dumpfile"                     # np.savez would append .npz; we don't
    r = run_cli("--model", files / "model" / "model.json", "--events", files / "sample.npz",
                "--json", "--repeat", "2", "--dump", dump)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["prediction"] == want["prediction"] and s["scores"] == want["scores"]
    assert s["spikes"] == {n: sum(map(sum, v)) for n, v in want["spikes"].items()}
    assert s["overflow_steps"] == {n: [k for k, f in enumerate(v) if f]
                                   for n, v in want["overflow"].items()}
    assert s["n_dropped"] == dropped and s["n_events"] == 300 and s["label"] == 1
    assert s["events_per_second"] > 0
    check_dump(dump, model, want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dumpfile"]


# -- bad input: one line on stderr, status 2, no traceback, nothing written -------------------

def _copy_model(files, tmp_path, edit):
    bad = tmp_path / "badmodel"
    bad.mkdir()
    for f in (files / "model").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    doc = json.loads((bad / "model.json").read_text())
    fragments = edit(bad, doc)
    (bad / "model.json").write_text(json.dumps(doc))
    return ["--model", bad, "--events", files / "sample.npz"], fragments


def _bad_model(files, tmp_path):
    def edit(bad, doc):
        doc["layers"][0]["reset"] = "hard"
        return ["badmodel", "model.json", "layers[0]", "reset", "'hard'"]
    return _copy_model(files, tmp_path, edit)


def _sha_mismatch(files, tmp_path):
    def edit(bad, doc):
        name = doc["layers"][0]["synapses"][0]["weights"]["file"]
        w = np.load(bad / name)
        # same values, other bytes
        np.save(bad / name, w.astype(np.int32 if w.dtype != np.int32 else np.int64))
        return [name, "sha256"]
    return _copy_model(files, tmp_path, edit)


def _events(tmp_path, rows, name="ev.npz"):
    ev = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (x, y, p, t) in enumerate(rows):
        ev[i] = (x, y, p, t)
    np.savez(tmp_path / name, events=ev)
    return tmp_path / name


BAD_CASES = {
    "missing model dir": lambda f, t: (["--model", t / "nope", "--events", f / "sample.npz"],
                                       ["nope", "not found"]),
    "bad model field": _bad_model,
    "sha mismatch": _sha_mismatch,
    "missing events": lambda f, t: (["--model", f / "model", "--events", t / "none.npz"],
                                    ["none.npz", "not found"]),
    "x out of range": lambda f, t: (["--model", f / "model", "--events",
                                     _events(t, [(0, 0, 0, 0), (6, 0, 0, 10)])],
                                    ["ev.npz", "event 1", "x=6"]),
    "dropped event out of range": lambda f, t: (
        ["--model", f / "model", "--events", _events(t, [(0, 0, 0, 0), (0, 0, 2, 10**9)])],
        ["ev.npz", "p=2"]),
    "unsorted": lambda f, t: (["--model", f / "model", "--events",
                               _events(t, [(0, 0, 0, 50), (0, 0, 0, 10)])],
                              ["ev.npz", "not sorted"]),
    "unknown file type": lambda f, t: (["--model", f / "model", "--events",
                                        (t / "e.csv", (t / "e.csv").write_text("1,2"))[0]],
                                       ["e.csv", "unknown event file type"]),
    "garbage events": lambda f, t: (["--model", f / "model", "--events",
                                     (t / "g.npy", (t / "g.npy").write_bytes(b"xx"))[0]],
                                    ["g.npy"]),
    "missing argument": lambda f, t: (["--model", f / "model"], ["--events"]),
    "unknown backend": lambda f, t: (["--model", f / "model", "--events", f / "sample.npz",
                                      "--backend", "gpu"], ["--backend", "gpu"]),
    "repeat zero": lambda f, t: (["--model", f / "model", "--events", f / "sample.npz",
                                  "--repeat", "0"], ["--repeat"]),
    "dump dir missing": lambda f, t: (["--model", f / "model", "--events", f / "sample.npz",
                                       "--dump", t / "no" / "d.npz"],
                                      ["--dump", "does not exist"]),
}


def _assert_one_line_error(rc, out, err, fragments):
    assert rc == 2, (out, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: ")
    for frag in fragments:
        assert str(frag) in lines[0], (frag, lines[0])


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_in_process(files, tmp_path, capsys, case):
    args, fragments = BAD_CASES[case](files, tmp_path)
    dump = tmp_path / "keep.npz"
    dump.write_bytes(b"old")
    before = sorted(p.name for p in tmp_path.iterdir())
    if "--dump" not in args:
        args = [*args, "--dump", dump]
    try:
        rc = cli.main_guard(main, [str(a) for a in args], prog=PROG)
    except SystemExit as e:                     # argparse usage errors exit by themselves
        rc = e.code
    out, err = capsys.readouterr()
    _assert_one_line_error(rc, out, err, fragments)
    assert dump.read_bytes() == b"old"          # an existing dump is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("case", ["bad model field", "x out of range", "missing events",
                                  "missing argument", "dump dir missing"])
def test_bad_input_subprocess(files, tmp_path, case):
    args, fragments = BAD_CASES[case](files, tmp_path)
    r = run_cli(*args)
    _assert_one_line_error(r.returncode, r.stdout, r.stderr, fragments)


# -- sim.cli helpers ---------------------------------------------------------------------------

def test_write_dump_is_atomic(files, tmp_path, monkeypatch):
    from sim import reference
    from sim.events import bin_events
    model = load_model(files / "model")
    ev, _ = load_events(files / "sample.npz")
    inp = model.input
    result = reference.run(model, bin_events(ev, inp.shape, inp.timesteps, inp.dt_us,
                                             inp.count_clip))
    target = tmp_path / "d.npz"
    target.write_bytes(b"old")

    def broken(path, **arrays):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError):
        write_dump(result, model, target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]
    monkeypatch.undo()
    with pytest.raises(ValueError, match="record=True"):
        write_dump(reference.run(model, bin_events(ev, inp.shape, inp.timesteps, inp.dt_us,
                                                   inp.count_clip), record=False),
                   model, target)
    assert target.read_bytes() == b"old"


def test_atomic_path_and_dir(tmp_path):
    target = tmp_path / "f.txt"
    with cli.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with cli.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "new"
    d = tmp_path / "out"
    for content in ("one", "two"):
        with cli.atomic_dir(d) as tmp:
            (tmp / "a").write_text(content)
        assert (d / "a").read_text() == content
    with pytest.raises(RuntimeError):
        with cli.atomic_dir(d) as tmp:
            (tmp / "a").write_text("three")
            raise RuntimeError("boom")
    assert (d / "a").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "out"]
    with pytest.raises(cli.CliError, match="does not exist"):
        with cli.atomic_path(tmp_path / "no" / "x"):
            pass


def test_main_guard(capsys):
    class Mine(Exception):
        pass

    def raiser(exc):
        def main(argv):
            raise exc
        return main
    assert cli.main_guard(raiser(cli.CliError("a\nb")), prog="t") == 2
    assert capsys.readouterr().err == "t: error: a b\n"
    assert cli.main_guard(raiser(FileNotFoundError(2, "No such file", "x.bin")), prog="t") == 2
    assert capsys.readouterr().err == "t: error: x.bin: No such file\n"
    assert cli.main_guard(raiser(Mine("domain")), prog="t", errors=(Mine,)) == 2
    assert capsys.readouterr().err == "t: error: domain\n"
    with pytest.raises(Mine):                   # not declared: a bug keeps its traceback
        cli.main_guard(raiser(Mine("bug")), prog="t")
    assert cli.main_guard(lambda argv: None) == 0
    assert cli.main_guard(lambda argv: 3) == 3
    with pytest.raises(SystemExit) as e:
        cli.ArgumentParser(prog="t").parse_args(["--nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("t: error: ")


# -- version 2 graphs ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph_files(tmp_path_factory):
    from .test_model import base_graph
    d = tmp_path_factory.mktemp("graph")
    save_model(base_graph(), d / "model")
    rng = np.random.default_rng(5)
    save_events(d / "sample.npz", make_events((2, 6, 6), 400, 4000, rng), label=0)
    return d


def test_v2_dump_holds_every_key(graph_files, tmp_path, capsys):
    from sim import reference
    from sim.events import bin_events
    dump = tmp_path / "g.npz"
    args = ["--model", graph_files / "model", "--events", graph_files / "sample.npz",
            "--dump", dump]
    assert cli.main_guard(main, [str(a) for a in args], prog=PROG) == 0
    model = load_model(graph_files / "model")
    ev, _ = load_events(graph_files / "sample.npz")
    inp = model.input
    binned = bin_events(ev, inp.shape, inp.timesteps, inp.dt_us, inp.count_clip)
    with np.load(dump) as z:
        keys = {"scores", "prediction", "current_c2"} | {
            f"{kind}_{name}" for kind in ("spikes", "state", "overflow")
            for name in ("c1", "c2", "fc")}
        assert set(z.files) == keys
        assert z["spikes_c1"].dtype == np.uint8 and z["spikes_c1"].max() == 2   # counts
        assert z["current_c2"].shape == (inp.timesteps, 3, 3, 3)
        for backend in available_backends():
            want = reference.run(model, binned, backend=backend).arrays()
            for key in keys:
                np.testing.assert_array_equal(z[key], want[key], err_msg=key)


@pytest.mark.parametrize("case", ["zero-delay cycle", "unknown source", "geometry mismatch",
                                  "taps disagree with weights", "spike_limit 0",
                                  "v_min positive", "current without beta",
                                  "acc_bits too small"])
def test_v2_bad_model_exit_2(graph_files, tmp_path, capsys, case):
    from .test_model import BAD_V2
    mutate, fragments = BAD_V2[case]

    def edit(bad, doc):
        mutate(doc, bad)
        return ["badmodel", "model.json", *fragments]
    args, fragments = _copy_model(graph_files, tmp_path, edit)
    args[3] = graph_files / "sample.npz"
    dump = tmp_path / "out.npz"
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = cli.main_guard(main, [str(a) for a in [*args, "--dump", dump]], prog=PROG)
    out, err = capsys.readouterr()
    _assert_one_line_error(rc, out, err, fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == before       # nothing written


def test_randmodel_cli_writes_a_graph_sim_run_reads(tmp_path, capsys):
    from sim import randmodel
    args = ["--seed", "3", "--model", str(tmp_path / "g"), "--events", str(tmp_path / "g.npz")]
    assert cli.main_guard(randmodel.main, args, prog=randmodel.PROG) == 0
    model = load_model(tmp_path / "g")
    assert model.version == 2 and len(model.layers) == 4
    assert sum(len(layer.synapses) for layer in model.layers) > 4
    dump = tmp_path / "d.npz"
    assert cli.main_guard(main, ["--model", str(tmp_path / "g"), "--events",
                                 str(tmp_path / "g.npz"), "--dump", str(dump)], prog=PROG) == 0
    with np.load(dump) as z:
        assert {f"spikes_{layer.name}" for layer in model.layers} <= set(z.files)
    capsys.readouterr()
    # nothing is replaced; bad values are one line, exit 2, nothing written
    before = sorted(p.name for p in tmp_path.iterdir())
    for bad, frag in ((args, "already exists"),
                      (["--model", str(tmp_path / "h"), "--events", str(tmp_path / "h.npz"),
                        "--layers", "0"], "--layers"),
                      (["--model", str(tmp_path / "h"), "--events", str(tmp_path / "h.txt")],
                       "--events")):
        rc = cli.main_guard(randmodel.main, bad, prog=randmodel.PROG)
        out, err = capsys.readouterr()
        assert rc == 2 and frag in err and len(err.strip().splitlines()) == 1, err
        assert sorted(p.name for p in tmp_path.iterdir()) == before

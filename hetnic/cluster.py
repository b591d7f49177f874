"""Running hetnic's work on a Dask distributed cluster (``--cluster``; docs/cluster.md).

``--cluster local[:N]`` starts a local cluster of N worker processes (default: one per
core) for the length of the command; ``--cluster ADDRESS`` (``tcp://host:8786``) joins a
running Dask scheduler. Dask is the optional extra ``hetnic[cluster]``: this module imports
it only inside :func:`open_cluster`, so the one-machine path never loads it.

Every task is a plain function of :mod:`hetnic.shard` or :mod:`hetnic.rss_eval` with its
inputs; :func:`run_tasks` submits them with retries (a task whose worker dies is rerun
elsewhere by the scheduler; one that raises is retried :data:`RETRIES` times), shows a
progress bar, and keeps every result in the build cache (``cluster/`` under
:func:`~hetnic.build_cache.cache_dir`) under a content hash of its inputs and of the
hetnic sources, so a rerun computes only what is missing. Workers must run the same hetnic as
the client (:func:`code_identity`: release and sources): a cluster that does not is refused,
and every task checks it again on its worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .build_cache import cache_dir, content_key
from .errors import HetnicError

__all__ = ["ClusterError", "ClusterSpec", "cluster_spec", "add_cluster_option", "code_version",
           "code_identity", "source_digest", "open_cluster", "Task", "run_tasks",
           "result_cache_dir", "prune_cache", "file_digest", "replay_on_cluster", "RETRIES",
           "CONNECT_TIMEOUT"]

#: Times a task that raised is tried again before the run fails (a task whose worker died
#: is rescheduled by Dask and does not count).
RETRIES = 2
#: Shards of a sharded replay per worker: more than one lets Dask's work stealing even out
#: a shard that a big flow makes longer, at the cost of one more simulator start each
#: (~0.06 CPU seconds, measured); the bench's captures split within 2%, so one.
SHARDS_PER_WORKER = 1
#: Seconds allowed to reach a cluster address.
CONNECT_TIMEOUT = 5
#: Dask settings for hetnic's clusters (a local cluster's scheduler and workers, and the
#: client): no statistical profiling of the tasks and slower monitoring ticks. Dask's
#: defaults (a stack sample every 10 ms, an event-loop tick every 20 ms, ...) cost about 10%
#: of a core while the simulators run.
QUIET_CONFIG = {"distributed.worker.profile.enabled": False,
                "distributed.admin.tick.interval": "1s",
                "distributed.admin.system-monitor.interval": "2s",
                "distributed.worker.memory.monitor-interval": "1s"}
INSTALL_HINT = "--cluster needs Dask distributed: pip install hetnic[cluster]"


class ClusterError(HetnicError, RuntimeError):
    """The cluster cannot be used or a task failed; the message is one line."""


@dataclass(frozen=True)
class ClusterSpec:
    """``local`` with ``workers`` processes, or a scheduler ``address``."""
    workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        return self.address or f"local:{self.workers}"


def cluster_spec(text: str) -> ClusterSpec:
    """The argparse ``type`` of ``--cluster``: ``local``, ``local:N`` (N from 1 to 256) or a
    scheduler address (``tcp://HOST:PORT``, ``HOST:PORT``)."""
    import argparse
    if text == "local":
        return ClusterSpec(workers=os.cpu_count() or 1)
    if text.startswith("local:"):
        n = text[len("local:"):]
        if not (n.isdigit() and 1 <= int(n) <= 256):
            raise argparse.ArgumentTypeError(f"{text!r}: local:N needs N from 1 to 256")
        return ClusterSpec(workers=int(n))
    host = text.split("://", 1)[-1]
    if ":" not in host or not host.rsplit(":", 1)[1].isdigit() or not host.rsplit(":", 1)[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: give local, local:N or a scheduler "
                                         "address HOST:PORT (tcp://HOST:PORT)")
    return ClusterSpec(address=text if "://" in text else f"tcp://{text}")


def add_cluster_option(parser, what: str, cached: bool = False) -> None:
    """``--cluster`` on a command's parser; ``what`` says what goes to the cluster. With
    ``cached``, ``--no-cache`` too (compute everything again; nothing read from or written to
    the result cache)."""
    parser.add_argument("--cluster", type=cluster_spec, metavar="local[:N]|ADDRESS",
                        help=f"{what} on a Dask cluster: local:N starts N worker processes "
                        "here, an address (tcp://HOST:PORT) joins a running scheduler "
                        "(needs pip install hetnic[cluster]; docs/cluster.md)")
    if cached:
        parser.add_argument("--no-cache", action="store_true",
                            help="with --cluster: compute every result again; none read from "
                            "or written to the result cache")


def code_version() -> str:
    """The hetnic release this process runs (the installed package's version): workers must
    run the one the client runs."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("hetnic")
    except PackageNotFoundError:
        return "unknown"


#: The source files :func:`source_digest` covers: the Python modules and the C and C++ of
#: the simulation harness and the host's native helpers.
SOURCE_SUFFIXES = (".py", ".c", ".cpp", ".h")


@lru_cache(maxsize=1)
def source_digest() -> str:
    """A hash of the sources (:data:`SOURCE_SUFFIXES`) of the hetnic this process runs, read
    once: part of :func:`code_identity` and of every result cache key, so results computed
    by other code are not reused (an editable install reports the same version for any
    code)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for folder in [root] + [root.parent / name for name in ("gateware", "host", "sim", "boards")]:
        paths = sorted(p for p in folder.rglob("*") if p.suffix in SOURCE_SUFFIXES
                       and p.is_file()) if folder.is_dir() else ()
        for path in paths:
            h.update(str(path.relative_to(folder.parent)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def code_identity() -> str:
    """What workers must share with the client: the release (:func:`code_version`) and the
    sources (:func:`source_digest`), as ``VERSION sources DIGEST``."""
    return f"{code_version()} sources {source_digest()}"


def _worker_version() -> str:
    """Run on each worker: :func:`code_identity` there (a test replaces
    :func:`code_version` to fake another release)."""
    from hetnic import cluster
    return cluster.code_identity()


def _checked(identity: str, fn: Callable, *args, **kwargs):
    """Run on a worker: ``fn(*args, **kwargs)`` if the worker runs the client's hetnic
    (``identity``, :func:`code_identity`), so a worker that joined after the check of
    :func:`open_cluster` is checked too; else ClusterError."""
    theirs = _worker_version()
    if theirs != identity:
        raise ClusterError(f"this worker runs another hetnic ({theirs}, the client: "
                           f"{identity}); install the same hetnic on the workers")
    return fn(*args, **kwargs)


@contextlib.contextmanager
def open_cluster(spec: ClusterSpec) -> Iterator:
    """A ``distributed.Client`` of ``spec``, its workers checked to run this hetnic and
    preloaded with the modules the tasks use; the local cluster is shut down on leaving.
    ClusterError (one line) if Dask is not installed, the address cannot be reached within
    :data:`CONNECT_TIMEOUT` seconds or a worker runs other code."""
    try:
        import dask
        import distributed
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    for name in ("distributed", "distributed.nanny", "distributed.scheduler",
                 "distributed.core", "distributed.worker", "distributed.comm.tcp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        stack.enter_context(dask.config.set(QUIET_CONFIG))
        if spec.address is None:
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=spec.workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.CRITICAL))
            client = stack.enter_context(distributed.Client(cluster))
            _wait_for_workers(client, spec.workers, 120)
        else:
            try:
                client = distributed.Client(spec.address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ClusterError(f"cannot reach the cluster at {spec.address} within "
                                   f"{CONNECT_TIMEOUT} s: {reason[:200]}") from None
            stack.enter_context(client)
            _wait_for_workers(client, 1, CONNECT_TIMEOUT * 6)
        check_versions(client)
        client.run(_preload)
        yield client


def _preload() -> None:
    """Run on each worker as the cluster starts: import what the tasks run (the replay, the
    driver, the models, scapy's capture reader), once, before any task is timed."""
    import scapy.utils  # noqa: F401
    from . import shard  # noqa: F401
    from .host import nic  # noqa: F401
    from .sim.model import rx_pipeline  # noqa: F401


def _wait_for_workers(client, n: int, seconds: float) -> None:
    try:
        client.wait_for_workers(n, timeout=seconds)
    except TimeoutError:
        have = len(client.scheduler_info(n_workers=-1)["workers"])
        raise ClusterError(f"{have} of {n} workers came up within {seconds:g} s") from None


def check_versions(client) -> None:
    """ClusterError unless every worker of ``client`` runs this process's hetnic (release
    and sources, :func:`code_identity`)."""
    mine = code_identity()
    theirs = client.run(_worker_version)
    other = {worker: v for worker, v in theirs.items() if v != mine}
    if other:
        worker, version = sorted(other.items())[0]
        raise ClusterError(f"{len(other)} of {len(theirs)} workers run another hetnic "
                           f"({worker}: {version}, here: {mine}); install the same hetnic "
                           "on the workers")


@dataclass
class Task:
    """One unit of cluster work: ``fn(*args, **kwargs)``, named ``name`` in progress and
    errors, cached under ``key`` (a :func:`~hetnic.build_cache.content_key` of its inputs;
    None: not cached)."""
    name: str
    fn: Callable
    args: tuple = ()
    kwargs: dict | None = None
    key: str | None = None


#: Bytes the result cache may hold; past it, the results least recently used are removed.
CACHE_LIMIT = 1 << 30


def result_cache_dir() -> Path:
    """The result cache: ``$HETNIC_CLUSTER_CACHE`` if set, else ``cluster/`` under the build
    cache (:func:`~hetnic.build_cache.cache_dir`). Only the client reads and writes it."""
    override = os.environ.get("HETNIC_CLUSTER_CACHE")
    if override:
        Path(override).mkdir(parents=True, exist_ok=True)
        return Path(override)
    return cache_dir("cluster")


def _cache_path(key: str) -> Path:
    return result_cache_dir() / f"{content_key(code_identity(), key)}.pickle"


def prune_cache(limit: int = CACHE_LIMIT) -> int:
    """Remove the least recently used results (a hit touches its file) until the cache holds
    at most ``limit`` bytes; the number removed."""
    files = []
    for path in result_cache_dir().glob("*.pickle"):
        try:
            st = path.stat()
        except OSError:
            continue
        files.append((st.st_mtime, st.st_size, path))
    total, removed = sum(size for _, size, _ in files), 0
    for _, size, path in sorted(files):
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
        total -= size
    return removed


def _cached(key: str | None):
    if key is None:
        return None
    path = _cache_path(key)
    try:
        with open(path, "rb") as f:
            value = pickle.load(f)
        os.utime(path)
        return (value,)
    except (OSError, pickle.UnpicklingError, EOFError):
        return None


def _store(key: str | None, value) -> None:
    if key is None:
        return
    path = _cache_path(key)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


class _Bar:
    """A one-line progress bar on stderr (a terminal only, unless ``always``)."""

    def __init__(self, label: str, total: int, always: bool = False):
        self.label, self.total = label, total
        self.on = total and (always or sys.stderr.isatty())

    def __call__(self, done: int) -> None:
        if self.on:
            width = 30
            fill = width * done // self.total
            end = "\n" if done == self.total else ""
            print(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total}",
                  end=end, file=sys.stderr, flush=True)


def run_tasks(client, tasks: list[Task], *, label: str = "cluster",
              retries: int = RETRIES, progress: bool | None = None,
              cache: bool = True, hits: set | None = None,
              keep: Callable | None = None, kept: dict | None = None) -> list:
    """The results of ``tasks`` in order: cached ones from the cache, the others computed
    on ``client``'s workers (each tried ``1 + retries`` times) and then cached (``cache``
    False: none read or written); the cache is then pruned (:func:`prune_cache`). The
    indices of the tasks served from the cache are added to ``hits``. With ``keep``, a
    computed task's full result stays on its worker, as a Dask future in ``kept[index]``
    (for later tasks' arguments: Dask moves it worker to worker, and computes it again if
    its worker is lost); what comes back to the client, and is cached, is ``keep(result)``,
    computed on the worker. Results of
    tasks that succeed are kept even when others fail; then ClusterError names the failed
    tasks and the first one's error."""
    from distributed import as_completed
    if not cache:
        tasks = [Task(t.name, t.fn, t.args, t.kwargs) for t in tasks]
    results: list = [None] * len(tasks)
    todo = []
    for i, task in enumerate(tasks):
        hit = _cached(task.key)
        if hit is None:
            todo.append(i)
        else:
            results[i] = hit[0]
            if hits is not None:
                hits.add(i)
    bar = _Bar(label, len(tasks), always=bool(progress))
    if progress is False:
        bar.on = False
    done = len(tasks) - len(todo)
    bar(done)
    futures = {}
    identity = code_identity()
    for i in todo:
        t = tasks[i]
        fut = client.submit(_checked, identity, t.fn, *t.args, **(t.kwargs or {}),
                            retries=retries, pure=False,
                            key=f"hetnic-{label}-{i}-{os.urandom(4).hex()}")
        if keep is not None:
            kept[i] = fut
            fut = client.submit(keep, fut, retries=retries, pure=False,
                                key=f"hetnic-{label}-kept-{i}-{os.urandom(4).hex()}")
        futures[fut] = i
    failed = []
    for fut in as_completed(list(futures)):
        i = futures[fut]
        if fut.status == "finished":
            results[i] = fut.result()
            _store(tasks[i].key, results[i])
        else:
            exc = fut.exception()
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            failed.append((i, f"{type(exc).__name__}: {first_line}"))
        done += 1
        bar(done)
        fut.release()
    if any(t.key for t in tasks):
        prune_cache()
    if failed:
        failed.sort()
        names = ", ".join(tasks[i].name for i, _ in failed[:5]) + (
            f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        n_kept = len(tasks) - len(failed)
        then = ("are cached, a rerun computes only the failed ones" if any(t.key for t in tasks)
                else "are not cached")
        raise ClusterError(f"{names} failed {1 + retries} times ({failed[0][1]}); the "
                           f"{n_kept} other results {then}")
    return results


def file_digest(path) -> str:
    """The SHA-256 of a file's bytes (hex): part of result cache keys."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def replay_on_cluster(client, pcap: str, config, *, data_width: int = 64, check: bool = True,
                      shards: int | None = None, ship_frames: bool | None = None,
                      cache: bool = True, progress: bool | None = None):
    """``hetnic replay`` of capture ``pcap`` on ``client``'s workers: the software model's
    record of every frame (:func:`~hetnic.shard.model_slice`, a slice per worker; the records
    stay on the workers, only the ``uint32`` Toeplitz hashes come back), split the capture
    into ``shards`` shards by flow (default: :data:`SHARDS_PER_WORKER` per worker), replay
    each shard on a simulated NIC of its own with the model check, the shard's model records
    handed to it worker to worker (:func:`~hetnic.shard.replay_shard`), and merge
    (:func:`~hetnic.shard.merge_results`). When the hashes come from the cache, the model
    records are not at hand: the shards that are not cached run the model themselves.

    The workers read the capture by its path when they share this machine's files (a local
    cluster; ``ship_frames`` False); otherwise (``ship_frames`` True, the default for a
    cluster at an address) the frame list goes to the cluster once, as one object. ``cache``
    False computes everything again (``--no-cache``; the figures of ``hetnic bench
    cluster``)."""
    from operator import itemgetter
    from .replay import read_capture
    from .shard import merge_results, model_slice, replay_shard, shard_indices
    import numpy as np
    workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    shards = shards or SHARDS_PER_WORKER * workers
    if ship_frames is None:
        ship_frames = not _local(client)
    source = (client.scatter([read_capture(pcap)])[0] if ship_frames
              else str(Path(pcap).resolve()))
    run_key = repr((file_digest(pcap), config, data_width))
    slices = [Task(f"model of slice {k} of {workers}", model_slice,
                   (source, k, workers, config), {"data_width": data_width},
                   key=content_key("hashes", run_key, str(k), str(workers)))
              for k in range(workers)]
    models: dict = {}
    hashes = np.concatenate(run_tasks(client, slices, label="model", progress=False,
                                      cache=cache, keep=itemgetter(0), kept=models))
    parts = shard_indices(hashes, shards)
    shared = {"data_width": data_width, "check": check}
    if len(models) == workers:
        shared["models"] = [models[k] for k in range(workers)]
    replay_tasks = [Task(f"shard {s} of {shards} ({len(ix)} frames)", replay_shard,
                         (source, ix, config), shared,
                         key=content_key("replay", run_key, str(check), ix.tobytes()))
                    for s, ix in enumerate(parts)]
    hits: set = set()
    results = run_tasks(client, replay_tasks, label="replay", progress=progress, cache=cache,
                        hits=hits)
    for i in hits:          # its seconds and cycles are those of the run that computed it
        results[i].stats["cached"] = True
    return merge_results(len(hashes), list(zip(parts, results)))


def _local(client) -> bool:
    """Whether every worker of ``client`` runs on this machine (it sees our files)."""
    import socket
    here = {"127.0.0.1", "localhost", socket.gethostname()}
    try:
        here.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    workers = client.scheduler_info(n_workers=-1)["workers"]
    hosts = {info.get("host") for info in workers.values()}
    return bool(hosts) and hosts <= here

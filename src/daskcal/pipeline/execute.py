"""How the runner computes a step on a cluster: in region order, results released as
they come, watched for memory stalls.

A step is one Dask computation: the writes of its output regions
(:mod:`daskcal.pipeline.checkpoint`) and its QA summaries. On a distributed cluster
:func:`compute_step`

* gives every task the priority of the **earliest region it leads to**
  (:func:`region_ranks`), ahead of dask's own order. Left to ``dask.order``, a step's
  graph is not computed region by region: for the flag stage (input chunks, their
  rechunking into overlapping time windows, the RFI tasks, the output rechunked back,
  the region writes, the QA reductions over the whole observation) it defers every
  region write to the end, so the input chunks pile up in the workers: on 2 workers x
  512 MiB and 4.3 GB of data, 125 input chunks (1.2 GB) were held, most of them
  spilled, after 4 minutes, and no region was written. In region order a few regions'
  data are in memory at a time, whatever the size of the observation;
* gathers every region's marker and every chunk of the QA summaries as soon as it is
  done and releases it. A worker keeps the record (``TaskState`` and task) of every
  task that a result it still holds came from: distributed forgets a released task
  only once nothing depends on it. Results kept to the end of the step (the markers,
  the summaries' chunks) kept the records of nearly all the step's tasks, 14 000 per
  worker for that flag step: Python objects that grew the workers' unmanaged memory
  by ~70 MiB, never given back to the system (fragmentation), until a worker crossed
  distributed's pause threshold and never resumed (the stall of issue #6, see
  ``tests/pipeline/test_out_of_core.py``);
* watches the cluster while it waits (:class:`PauseWatch`): when workers stay paused
  for memory with no task executing anywhere for ``paused_timeout`` seconds, nothing
  can progress any more (a paused worker starts no task, and the memory it holds
  beyond its data is not spilled), so the computation is cancelled and
  :class:`WorkersPausedError` names the step, instead of waiting forever.

The runner builds the graphs of its data steps with :data:`STEP_GRAPH_CONFIG`: Dask's
task-based rechunking rather than distributed's P2P rechunking, which Dask picks for
large rechunks when a client is active (the flag stage's windows at 16 GB). The 16 GB /
2 x 2 GiB flag step failed with P2P (a region's block of 8 rows where the store
expected 27, at a window boundary) and completed with tasks, within 1.65 GiB per
worker; streaming region by region needs no all-to-all barrier anyway.

Dask's threaded scheduler (no cluster) computes as before: it has no workers to pause.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

from daskcal import DaskcalError

#: Seconds the workers may stay paused for memory, no task executing, before a step fails.
PAUSED_TIMEOUT_S = 60.0
#: Dask settings the runner builds its data steps' graphs with (see the module notes).
STEP_GRAPH_CONFIG: dict[str, Any] = {"array.rechunk.method": "tasks"}


class WorkersPausedError(DaskcalError, RuntimeError):
    """The cluster's workers stayed paused for memory, no task running: no progress."""


def count_tasks(writes: list[Any]) -> int:
    """Tasks of the region writes (after culling), for the step record."""
    import dask

    if not writes:
        return 0
    joined = dask.delayed(list)(writes)
    graph = joined.__dask_graph__()
    return len(graph.cull(set(joined.__dask_keys__())))


def _dependencies(dsk: Mapping[Hashable, Any]) -> dict[Hashable, set[Hashable]]:
    from dask.core import get_dependencies

    out = {}
    for key, task in dsk.items():
        deps = getattr(task, "dependencies", None)
        if deps is None:  # legacy tuple tasks
            deps = get_dependencies(dsk, key)
        out[key] = {d for d in deps if d in dsk}
    return out


def region_ranks(dsk: Mapping[Hashable, Any], sinks: Sequence[Hashable],
                 dependencies: Mapping[Hashable, Iterable[Hashable]] | None = None
                 ) -> dict[Hashable, int]:
    """The rank of every task of a step's graph: the first region it is needed for.

    Parameters
    ----------
    dsk : mapping
        The materialised graph (key -> task).
    sinks : sequence of keys
        The tasks that complete each region (its marker), in the order the regions
        should be written.
    dependencies : mapping, optional
        key -> keys it depends on, if known (as :func:`dask.optimization.cull` gives
        them); else read from the tasks.

    Returns
    -------
    dict
        key -> rank: a sink's position in ``sinks``; a task that some sink depends on,
        the smallest rank of those sinks; any other task (the QA summaries'
        reductions), the largest rank of its dependencies (it runs as soon as its
        inputs are there, and so releases them), or, with no ranked dependency, the
        smallest rank of its dependents.
    """
    deps = (_dependencies(dsk) if dependencies is None
            else {k: {d for d in ds if d in dsk} for k, ds in dependencies.items()})
    dependents: dict[Hashable, list[Hashable]] = defaultdict(list)
    for key, ds in deps.items():
        for d in ds:
            dependents[d].append(key)
    waiting = {key: len(ds) for key, ds in deps.items()}
    topo = deque(key for key, n in waiting.items() if n == 0)
    order: list[Hashable] = []
    while topo:
        key = topo.popleft()
        order.append(key)
        for d in dependents[key]:
            waiting[d] -= 1
            if waiting[d] == 0:
                topo.append(d)
    rank = {key: i for i, key in enumerate(sinks) if key in dsk}
    for key in reversed(order):  # upstream of the sinks: the first region needing it
        if key not in rank:
            r = [rank[d] for d in dependents[key] if d in rank]
            if r:
                rank[key] = min(r)
    for key in order:  # downstream only (QA): right after its inputs
        if key not in rank:
            r = [rank[d] for d in deps[key] if d in rank]
            if r:
                rank[key] = max(r)
    for key in reversed(order):  # inputs of the QA alone (constants)
        if key not in rank:
            r = [rank[d] for d in dependents[key] if d in rank]
            rank[key] = min(r) if r else 0
    return rank


class PauseWatch:
    """A thread that stops a computation when its workers stay paused for memory.

    The computation is stalled when no worker is executing a task, at least one is
    paused (every one, or the others idle: the tasks left wait in the paused workers,
    which start none, and the memory they hold beyond their data is not spilled), and
    the scheduler has seen no task change state since the previous look (where it lets
    the client run functions on it).

    Parameters
    ----------
    client : distributed.Client
    timeout : float
        Seconds the stall may last, s.
    label : str
        The step, for the message.
    on_stall : callable
        Called (with no argument, in the thread) once the stall lasted ``timeout``:
        cancels the computation.
    poll : float, optional
        Seconds between looks at the scheduler (default: a tenth of ``timeout``,
        between 0.5 and 5 s).

    Attributes
    ----------
    error : str or None
        The one-line reason, once ``on_stall`` was called.
    """

    def __init__(self, client: Any, timeout: float, label: str,
                 on_stall: Callable[[], None], poll: float | None = None) -> None:
        self.client, self.timeout, self.label, self.on_stall = client, timeout, label, on_stall
        self.poll = poll if poll is not None else min(5.0, max(0.5, timeout / 10))
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="daskcal-pause-watch",
                                        daemon=True)

    def __enter__(self) -> PauseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _transitions(self) -> int | None:
        """The scheduler's count of task transitions (None if it runs no functions)."""
        try:
            return int(self.client.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.transition_counter))
        except Exception:
            return None

    def _stalled(self) -> list[dict[str, Any]] | None:
        """The workers, if at least one is paused and none is executing; else None."""
        try:
            workers = list(self.client.scheduler_info(n_workers=-1)["workers"].values())
        except Exception:  # the scheduler is busy or going away: not a stall
            return None
        if not any(w.get("status") == "paused" for w in workers):
            return None
        if any((w.get("metrics") or {}).get("task_counts", {}).get("executing", 0)
               for w in workers):
            return None
        return workers

    def _run(self) -> None:
        since = None
        count = None
        while not self._stop.wait(self.poll):
            workers = self._stalled()
            # a worker pausing and resuming between two looks still moves tasks on
            last, count = count, self._transitions() if workers is not None else None
            if workers is None or (count is not None and count != last):
                since = None
                continue
            now = time.monotonic()
            since = now if since is None else since
            if now - since < self.timeout:
                continue
            paused = [w for w in workers if w.get("status") == "paused"]
            memory = ", ".join(
                f"{(w.get('metrics') or {}).get('memory', 0) / 2**20:.0f}"
                f"/{(w.get('memory_limit') or 0) / 2**20:.0f} MiB" for w in paused)
            who = ("every worker" if len(paused) == len(workers)
                   else f"{len(paused)} of {len(workers)} workers")
            self.error = (
                f"{self.label}: {who} paused for memory and no task running for "
                f"{now - since:.0f} s with tasks pending (process memory/limit: {memory}); "
                "give the workers more memory or lower the chunk sizes (the recipe's "
                "chunks, the stage's memory or window settings)")
            with contextlib.suppress(Exception):
                self.on_stall()
            return


def gather_watched(client: Any, futures: list[Any], *, label: str,
                   paused_timeout: float | None = PAUSED_TIMEOUT_S) -> list[Any]:
    """``client.gather(futures)``, given up when the workers stay paused for memory.

    Parameters
    ----------
    client : distributed.Client
    futures : list of distributed.Future
    label : str
        What is computed, for the message.
    paused_timeout : float or None
        As for :func:`compute_step`, s.

    Returns
    -------
    list
        The futures' results.

    Raises
    ------
    WorkersPausedError
        The workers stayed paused for ``paused_timeout`` seconds (the futures are
        cancelled).
    """
    from distributed import CancelledError

    if not paused_timeout:
        return client.gather(futures)
    with PauseWatch(client, paused_timeout, label, lambda: client.cancel(futures)) as watch:
        try:
            return client.gather(futures)
        except CancelledError:
            if watch.error:
                raise WorkersPausedError(watch.error) from None
            raise


def _leaf_delayeds(coll: Any) -> list[Any]:
    """One Delayed per output key (chunk) of a collection, sharing its graph."""
    from dask.core import flatten
    from dask.delayed import Delayed

    graph = coll.__dask_graph__()
    return [Delayed(k, graph, layer=k[0] if isinstance(k, tuple) else k)
            for k in flatten(coll.__dask_keys__())]


def _graph(writes: list[Any], colls: list[Any]
           ) -> tuple[dict[Hashable, Any], list[Hashable], dict[Hashable, list[Hashable]]]:
    """The optimised graph of the writes and the collections' chunks, its output keys
    and every task's dependencies.

    The writes and every chunk of the collections are outputs (so that each can be
    gathered and released as soon as it is done: a result a worker keeps also keeps
    there the record of every task it came from, see :func:`compute_step`); all go
    through one optimisation, as :meth:`distributed.Client.compute` would do it, so
    that the work they share is done once.
    """
    import dask
    from dask.base import collections_to_expr
    from dask.optimization import cull

    leaves = [d for c in colls for d in _leaf_delayeds(c)]
    job = dask.delayed([*writes, *leaves])
    expr = collections_to_expr([job], optimize_graph=True).optimize()
    dsk = dict(expr.__dask_graph__())
    keys = list(dict.fromkeys([w.key for w in writes] + [d.key for d in leaves]))
    dsk, deps = cull(dsk, keys)  # the outputs' tasks, without the joining list's
    return dsk, keys, deps


def _nested(keys: Any, values: Mapping[Hashable, Any]) -> Any:
    if isinstance(keys, list):
        return [_nested(k, values) for k in keys]
    return values[keys]


class _Bar:
    """A text progress bar of the outputs done (on stderr)."""

    def __init__(self, total: int, unit: str) -> None:
        self.total, self.unit, self.done, self.t0 = max(total, 1), unit, 0, time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        frac = self.done / self.total
        sys.stderr.write(f"\r[{'#' * int(40 * frac):<40}] {100 * frac:3.0f}% | {self.done}/"
                         f"{self.total} {self.unit} | {time.monotonic() - self.t0:.0f} s")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def compute_step(writes: list[Any], client: Any | None, progress: bool, extra: Any = None,
                 *, label: str = "step",
                 paused_timeout: float | None = PAUSED_TIMEOUT_S) -> Any:
    """Compute a step's region writes (and ``extra``, its QA summaries) in one computation.

    On a cluster, every region write and every chunk of ``extra`` is gathered as soon
    as it is done and then released (see the module notes), and the tasks run in
    region order (:func:`region_ranks`).

    Parameters
    ----------
    writes : list of dask.delayed.Delayed
        The region writes, each ending with its marker, in the order to write them.
    client : distributed.Client or None
        None: Dask's threaded scheduler in this process.
    progress : bool
        Show a text progress bar on stderr.
    extra : optional
        More to compute in the same graph (nested dicts of dask collections).
    label : str
        The step, for messages.
    paused_timeout : float or None
        Seconds the workers may stay paused for memory (at least one paused, none
        executing a task) before the computation is cancelled, s; None or 0: wait
        forever.

    Returns
    -------
    The computed ``extra`` (None without it).

    Raises
    ------
    WorkersPausedError
        The workers stayed paused for memory for ``paused_timeout`` seconds.
    """
    import dask

    if not writes and extra is None:
        return None
    if client is None:
        bar: contextlib.AbstractContextManager = contextlib.nullcontext()
        if progress:
            from dask.diagnostics import ProgressBar

            bar = ProgressBar(minimum=0.5, dt=0.5, out=sys.stderr)
        with bar:
            *_, result = dask.compute(*writes, extra, scheduler="threads")
        return result
    from dask.base import unpack_collections
    from distributed import CancelledError, as_completed

    colls, repack = unpack_collections(extra)
    dsk, keys, deps = _graph(writes, colls)
    ranks = region_ranks(dsk, [w.key for w in writes], deps)
    # priority: higher runs first; a builtin callable, so that the scheduler needs no
    # daskcal to unpickle it (a key it does not know: as the first region)
    priority = defaultdict(int, {key: -r for key, r in ranks.items()}).__getitem__
    futures = dict(zip(keys, client.get(dsk, keys, sync=False, priority=priority),
                       strict=True))
    values: dict[Hashable, Any] = {}
    counter = _Bar(len(writes), "regions") if progress and writes else None
    marks = {w.key for w in writes}

    def cancel() -> None:
        client.cancel(list(futures.values()))

    watch = PauseWatch(client, paused_timeout, label, cancel) if paused_timeout else None
    try:
        with watch or contextlib.nullcontext():
            for future in as_completed(list(futures.values())):
                try:
                    value = future.result()
                except CancelledError:
                    if watch is not None and watch.error:
                        raise WorkersPausedError(watch.error) from None
                    raise
                if future.key in marks:
                    if counter is not None:
                        counter.update()
                else:
                    values[future.key] = value
                futures.pop(future.key, None)
                future.release()
    finally:
        if futures:
            with contextlib.suppress(Exception):
                client.cancel(list(futures.values()))
    if extra is None:
        return None
    results = []
    for coll in colls:
        finalize, args = coll.__dask_postcompute__()
        results.append(finalize(_nested(coll.__dask_keys__(), values), *args))
    return repack(results)[0]


__all__ = ["PAUSED_TIMEOUT_S", "STEP_GRAPH_CONFIG", "PauseWatch", "WorkersPausedError",
           "compute_step", "count_tasks", "gather_watched", "region_ranks"]

"""Where sim.regress runs its shapes: a Dask cluster, or worker processes on this machine.

    python -m sim.regress --cases 1000                              # local Dask cluster
    python -m sim.regress --cases 100000 --scheduler tcp://head:8786  # a farm
    python -m sim.regress --cases 1000 --engine processes            # no Dask

``auto`` (the default) is Dask's distributed scheduler when the ``distributed`` package is
installed (the ``distributed`` extra; scripts/setup.sh installs it), and the standard
library's process pool when it is not, so a bare install still runs. With Dask and no
``--scheduler``, a ``LocalCluster`` of ``workers`` single-threaded worker processes starts
for the run and stops after it; with ``--scheduler ADDRESS``, the tasks go to that
scheduler's workers, which need this project installed (the same commit) and the run's
``--out`` folder on a shared filesystem (failing shapes keep their folders there).
Results, coverage and reports come back to this process, which writes every summary.

A task is one shape (:func:`sim.regress.run_shape`): its seeds are fixed by the plan before
anything is submitted, so an engine changes where and in which order shapes run, never
what they compute; results are sorted by seed before they are reported.
"""
from __future__ import annotations

import concurrent.futures as futures
import contextlib
import logging
from typing import Callable, Iterator

from project_config import UserError

try:            # optional (the 'distributed' extra): without it the process pool runs
    import dask
    import distributed
except ImportError:
    dask = distributed = None

ENGINES = ("auto", "dask", "processes")


def dask_installed() -> bool:
    """Whether Dask's distributed scheduler can be imported."""
    return distributed is not None


def resolve(engine: str, scheduler: str | None = None) -> str:
    """The engine a run uses: ``dask`` or ``processes``. Raises UserError for a choice this
    machine cannot honour (Dask asked for but not installed; a scheduler without Dask)."""
    if engine not in ENGINES:
        raise UserError(f"--engine {engine!r} is not one of {list(ENGINES)}")
    if engine == "auto":
        engine = "dask" if dask_installed() or scheduler else "processes"
    if engine == "dask" and not dask_installed():
        raise UserError("--engine dask: Dask's 'distributed' package is not installed "
                        "(pip install -e '.[distributed]', or --engine processes)")
    if scheduler and engine != "dask":
        raise UserError("--scheduler: a scheduler address needs --engine dask")
    return engine


@contextlib.contextmanager
def _dask_client(workers: int, scheduler: str | None):
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as e:
            raise UserError(f"--scheduler {scheduler}: no Dask scheduler answered ({e})") from None
        with client:
            yield client
        return
    # Single-threaded workers: a shape runs one simulator process at a time, and the
    # testbench redirects its process's stdout while it runs. No memory limit: the
    # simulators are child processes, outside what a worker would measure.
    # allowed-failures 0: a shape that kills its worker is reported, not run on the next;
    # worker-saturation 1: a worker holds one shape at a time, so it takes no other with it.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     memory_limit=0, dashboard_address=None,
                                     silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def run_tasks(fn: Callable, tasks: list, engine: str, workers: int,
              scheduler: str | None = None) -> Iterator[tuple[int, object, BaseException | None]]:
    """Run ``fn(*args)`` for every ``args`` in ``tasks`` on ``engine`` (from :func:`resolve`);
    yields ``(index, result, error)`` as tasks finish: ``error`` is the exception a task
    raised or died of (a killed worker), with ``result`` None."""
    if engine == "dask":
        with _dask_client(workers, scheduler) as client:
            jobs = {client.submit(fn, *args, pure=False, retries=0): i
                    for i, args in enumerate(tasks)}
            yield from _as_finished(jobs, distributed.as_completed)
        return
    with futures.ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        jobs = {pool.submit(fn, *args): i for i, args in enumerate(tasks)}
        yield from _as_finished(jobs, futures.as_completed)


def _as_finished(jobs: dict, as_completed) -> Iterator[tuple[int, object, BaseException | None]]:
    """``(index, result, error)`` of each future of ``jobs`` ({future: index}) as it finishes
    (``as_completed``: the engine's), for :func:`run_tasks`."""
    for job in as_completed(jobs):
        try:
            yield jobs[job], job.result(), None
        except Exception as e:             # noqa: BLE001: reported per task by the caller
            yield jobs[job], None, e

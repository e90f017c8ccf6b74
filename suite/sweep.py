"""Sweeps: a list of independent cells handed to an executor, results concatenated in order.

The same sweep runs in this process (``jobs=1``), in a local process pool (``jobs=N``, the
default for the CLI), or on a Dask distributed cluster (``dask="local"`` starts one on this
machine; any other string is a scheduler address). Every worker process runs with one torch
thread and one Numba thread: on small machines, pools that share cores slow each other down by
orders of magnitude.

A cell function takes one cell and returns a list of row dicts; the sweep returns them in cell
order, whatever order they finished in.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

Row = dict[str, Any]


class MissingExtraError(RuntimeError):
    """An optional dependency is not installed; the message says what to install."""

    def __init__(self, extra: str) -> None:
        super().__init__(f"this needs the optional extra {extra!r}, which is not installed: "
                         f"pip install 'gradsuite[{extra}]'")
        self.extra = extra


def require_dask() -> None:
    """Raise :class:`MissingExtraError` unless ``dask.distributed`` can be imported."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("dask") from exc


def set_threads(n: int = 1) -> dict[str, int]:
    """Pin torch's intra-op pool and Numba's to ``n`` threads; return the counts read back.

    Numba goes first: starting its threading layer (``omp`` here) sets the OpenMP runtime's
    thread count, which torch shares, back to ``NUMBA_NUM_THREADS``. Pinning torch before that
    left ``torch.get_num_threads()`` at 2 after asking for 1, and fused torch.optim steps
    silently ran on two cores.
    """
    import numba
    import torch

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(n)
    return thread_counts()


def thread_counts() -> dict[str, int]:
    """The thread counts torch and Numba report now (recorded with every measurement)."""
    import numba
    import torch

    return {"torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads()}


def _end_with_parent() -> None:
    """In a worker: end when the process that started it ends, however it ends.

    On Linux the kernel is asked to send SIGTERM when the parent exits (``PR_SET_PDEATHSIG``),
    which covers a parent killed with SIGKILL too. SIGINT is ignored: Ctrl-C reaches every
    process of the terminal's group, and the parent stops the workers itself (see
    :func:`iter_cells`) instead of each printing its own traceback. SIGTERM gets its default
    action back (a forked worker inherits the parent's handler, which would turn it into an
    exception that the pool catches and reports instead of ending).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not a handler inherited from the parent
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # best effort
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent was gone before the request took effect
        os._exit(1)


def _watch_run(run_pid: int, every: float = 0.5) -> None:
    """In a worker: end when the run's process ``run_pid`` is gone.

    Workers started through a forkserver are children of the forkserver, not of the run, so
    the kernel's parent-death signal alone does not fire when the run is killed outright
    (SIGKILL); a daemon thread polls the run's pid instead.
    """
    import threading

    def watch() -> None:
        while True:
            time.sleep(every)
            try:
                os.kill(run_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # a reused pid of another user: the run is gone
                os._exit(1)

    threading.Thread(target=watch, name="gradsuite-watch-run", daemon=True).start()


def _init_worker(run_pid: int | None = None) -> None:
    _end_with_parent()
    if run_pid is not None and run_pid != os.getppid():
        _watch_run(run_pid)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    set_threads(1)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the worker processes now (not after their cell)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def _run_one(fn: Callable[[Any], list[Row]], cell: Any) -> list[Row]:
    return fn(cell)


def iter_cells(fn: Callable[[Any], list[Row]], cells: Sequence[Any], jobs: int = 1,
               dask: str | None = None) -> Iterator[tuple[int, list[Row]]]:
    """Yield ``(index, rows)`` as cells finish (any order)."""
    if dask is not None:
        yield from _iter_dask(fn, cells, dask)
        return
    if jobs <= 1 or len(cells) <= 1:
        for i, cell in enumerate(cells):
            yield i, fn(cell)
        return
    # forkserver, not fork: a parent that already runs OpenMP (Numba's threading layer, torch)
    # cannot fork children that use it ("fork() called from a process already using GNU
    # OpenMP" kills them)
    import multiprocessing
    from concurrent.futures import as_completed

    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                               initargs=(os.getpid(),),
                               mp_context=multiprocessing.get_context("forkserver"))
    try:
        futures = {pool.submit(_run_one, fn, cell): i for i, cell in enumerate(cells)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    except BaseException:
        # KeyboardInterrupt, SIGTERM turned into an exception by the CLI, a failing cell or
        # a consumer that stops early: the workers must not outlive this call
        _stop_pool(pool)
        raise
    pool.shutdown()


def _iter_dask(fn: Callable[[Any], list[Row]], cells: Sequence[Any], address: str
               ) -> Iterator[tuple[int, list[Row]]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise MissingExtraError("dask") from exc
    cluster = None
    if address == "local":
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        client.run(_init_worker)
        futures = client.map(fn, list(cells), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            yield index[fut.key], fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_cells(fn: Callable[[Any], list[Row]], cells: Sequence[Any], jobs: int = 1,
              dask: str | None = None, progress: str | None = None,
              checkpoint: Path | None = None) -> list[Row]:
    """All rows of all cells, in cell order.

    With ``checkpoint`` (a directory), each finished cell's rows are written there at once,
    atomically, as ``cell-<index>.pkl``, and cells already there are loaded instead of run:
    an interrupted sweep resumes where it stopped. A checkpoint that cannot be read is run
    again.
    """
    results: dict[int, list[Row]] = {}
    todo = list(range(len(cells)))
    if checkpoint is not None:
        checkpoint.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(repr(list(cells)).encode()).hexdigest()
        key_file = checkpoint / "cells.key"
        if key_file.exists() and key_file.read_text() != key:
            raise ValueError(f"{checkpoint} holds cells of a different sweep; resume with the "
                             "same options, or start a new run")
        _write_atomic(key_file, key.encode())
        for i in list(todo):
            f = checkpoint / f"cell-{i}.pkl"
            if f.exists():
                try:
                    results[i] = pickle.loads(f.read_bytes())
                    todo.remove(i)
                except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
                    pass
    it = ((todo[k], rows) for k, rows in iter_cells(fn, [cells[i] for i in todo], jobs, dask))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(todo), desc=progress, unit="cell")
    for i, rows in it:
        results[i] = rows
        if checkpoint is not None:
            _write_atomic(checkpoint / f"cell-{i}.pkl", pickle.dumps(rows))
    return [row for i in range(len(cells)) for row in results[i]]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

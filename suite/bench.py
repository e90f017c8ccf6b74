"""The roofline: how close each optimizer step runs to the machine's streaming bandwidth.

``roofline(size, threads)`` measures, in one process and one run:

1. the STREAM triad ``a = b + s·c`` (compiled with Numba, the same thread count). STREAM counts
   3 arrays x itemsize bytes per element; but ``a`` is only written, so the cache first reads
   each of its lines (write-allocate) and the memory actually moves 4 arrays. The roofline
   uses the bytes actually moved (``triad_GB_per_s``) and also reports STREAM's figure
   (``triad_stream_GB_per_s``). As a cross-check it measures an in-place update ``a = a + s·b``
   (``update_GB_per_s``: 3 arrays, no write-allocate since every written line was read), which
   is the access pattern of an optimizer step; the two agree to within a few per cent here.
2. for each optimizer, a step of one large tensor (``size`` elements, far beyond the caches) by
   each implementation: ours (``numba``, ``numpy``, ``torch`` backend) and torch.optim's
   ``forloop``, ``foreach`` and (where it exists) ``fused``.

For each it reports the bytes a step must move (every parameter, gradient and state array read
once, and parameter and state written once; in-place, so no write-allocate traffic), the
achieved GB/s, the fraction of the triad bandwidth, the speedup over torch's fastest CPU
implementation of the same step, and the peak memory a step allocates beyond what exists before
it, in units of the parameter's size (``temporaries``: 0 for a fused loop, 1 per full-size
temporary array; measured from the kernel's peak-RSS counter after the timings, see
:func:`peak_extra_bytes`). Timings are medians of ``repeats`` after a warm-up; the thread counts
are set and recorded.

The ceiling is measured *paired* with each implementation and on *its own memory*: a streaming
kernel with the step's access pattern (the gradient read, the parameter and every state array
read and written in place, one multiply-add per array: :func:`ceiling_kernel`), run over that
implementation's own parameter, gradient and state arrays (:func:`own_ceiling`; the values are
left as they are). Its own memory, because where the arrays happen to sit in physical memory
moves the bandwidth more than anything an implementation does: the same Adam step on four
fresh sets of arrays ran at 25 to 51 GB/s here, and a ceiling on other arrays read 0.8 or 1.3
of it by luck. Each ceiling is timed right before its implementation, round by round, at the
same thread count, and every time is the best of ``repeats`` rounds (``spread``: the median
round's distance from the best one), on the calling thread's CPU clock at one thread (time
spent waiting for a core on a shared machine is left out) and on the wall clock at more
(``clock`` column). ``fraction_of_ceiling`` is the median over rounds of the ratio of those two
adjacent times (``fraction_spread``: half the interquartile range of the ratios, relative):
adjacent calls see the same load and the same memory, so the fraction stays at or below 1
within that spread. ``speedup_vs_best_torch`` is the plain ratio of best times (it carries the
luck of each one's memory); ``speedup_vs_best_torch_per_ceiling`` compares fractions of each
one's own ceiling instead (ours over torch.optim's best), which takes the placement out.
``threads`` may be a list: the measurement is repeated at each count (a thread sweep), and every
row records the count asked for and the counts torch and Numba report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, prange

from suite import optim
from suite.optim.numba_kernels import _JIT as K_JIT
from suite.optim.numba_kernels import parallel as K_parallel
from suite.sweep import set_threads, thread_counts

#: arrays read and written per element by one step (beyond p and g), by configuration
BENCH_HYPER: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 1e-3, "momentum": 0.9},
    "adagrad": {"lr": 1e-2},
    "rmsprop": {"lr": 1e-3},
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3},
    "nadam": {"lr": 2e-3},
    "radam": {"lr": 1e-3},
    "adamax": {"lr": 2e-3},
    "adadelta": {"lr": 1.0},
    "rprop": {"lr": 1e-2},
    "asgd": {"lr": 1e-2, "t0": 0.0},  # averaging on: ax is read and written every step
    # a 1-d tensor: the unfactored variance; bytes count one pass, and Adafactor needs two
    # (RMS(p) and RMS(U) come before any element can be updated)
    "adafactor": {"lr": 1e-2},
}


def bytes_per_element(name: str, hyper: dict[str, Any], itemsize: int) -> int:
    """Reads: p, g and every state array; writes: p and every state array."""
    spec = optim.get_spec(name)
    n_state = len([s for s in spec.state_names(spec.resolve(**hyper), 1)
                   if s != "step" and s not in spec.scalar_state])  # 0-dim state: no traffic
    return (2 + n_state + 1 + n_state) * itemsize


@njit(parallel=True, cache=True)
def _triad(a, b, c, s):  # pragma: no cover - compiled
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


@njit(parallel=True, cache=True)
def _update(a, b, s):  # pragma: no cover - compiled
    for i in prange(a.size):
        a[i] = a[i] + s * b[i]


# The ceiling's kernels are written like the optimizer kernels (serial elementwise loops, the
# same compile options) and run through the same ``parallel`` driver: the same chunks on the
# same threads, so that the reference and the step differ only in their arithmetic.
@njit(**K_JIT)
def _ceiling1(g, a, s):  # pragma: no cover - compiled
    for i in range(g.size):
        gi = g[i]
        a[i] = a[i] + s * gi


@njit(**K_JIT)
def _ceiling2(g, a, b, s):  # pragma: no cover - compiled
    for i in range(g.size):
        gi = g[i]
        ai = a[i]
        bi = b[i]
        a[i] = ai + s * gi
        b[i] = bi + s * gi


@njit(**K_JIT)
def _ceiling3(g, a, b, c, s):  # pragma: no cover - compiled
    for i in range(g.size):
        gi = g[i]
        ai = a[i]
        bi = b[i]
        ci = c[i]
        a[i] = ai + s * gi
        b[i] = bi + s * gi
        c[i] = ci + s * gi


@njit(**K_JIT)
def _ceiling4(g, a, b, c, d, s):  # pragma: no cover - compiled
    for i in range(g.size):
        gi = g[i]
        ai = a[i]
        bi = b[i]
        ci = c[i]
        di = d[i]
        a[i] = ai + s * gi
        b[i] = bi + s * gi
        c[i] = ci + s * gi
        d[i] = di + s * gi


_CEILINGS = {k: K_parallel(f) for k, f in
             {1: _ceiling1, 2: _ceiling2, 3: _ceiling3, 4: _ceiling4}.items()}


def ceiling_kernel(n_rw: int, size: int, dtype: str = "float32") -> Callable[[], Any]:
    """A streaming step over ``size`` elements: one array read, ``n_rw`` arrays read and
    written in place (1 to 4), on Numba's current threads. It moves the bytes of an optimizer
    step whose parameter and ``n_rw - 1`` state arrays are updated, with none of its arithmetic.
    """
    if n_rw not in _CEILINGS:
        raise ValueError(f"n_rw must be 1 to 4 (the parameter plus up to three state arrays), "
                         f"got {n_rw}")
    g = np.ones(size, dtype=dtype)
    arrays = [np.ones(size, dtype=dtype) for _ in range(n_rw)]
    s = np.dtype(dtype).type(1e-30)
    fn = _CEILINGS[n_rw]
    return lambda: fn(g, *arrays, s)


def own_ceiling(grad: Any, arrays: Sequence[Any]) -> Callable[[], Any] | None:
    """The ceiling kernel over an implementation's *own* memory: ``grad`` read, each of
    ``arrays`` (the parameter and the full-size state arrays) read and written in place, on
    Numba's current threads. NumPy arrays or CPU tensors (viewed, not copied); the multiplier is
    0, so the values stay as they are (up to the sign of a zero). None where there are more
    than four arrays to update.

    Why its own: the bandwidth a stream of arrays gets depends on where those arrays happen to
    sit in physical memory. On this machine (a virtual machine), the same Adam step on four
    freshly allocated sets of arrays ran at 25 to 51 GB/s, and the ceiling kernel run on each
    set's own arrays tracked it within a few per cent each time; a ceiling on other arrays is no
    bound for the step.
    """
    def view(a: Any) -> np.ndarray:
        return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)

    g = view(grad).reshape(-1)
    rw = [view(a).reshape(-1) for a in arrays]
    if not 1 <= len(rw) <= 4 or any(a.size != g.size or a.dtype != g.dtype for a in rw):
        return None
    fn = _CEILINGS[len(rw)]
    zero = g.dtype.type(0)
    return lambda: fn(g, *rw, zero)


def _full_size_items(state: Any, size: int) -> dict[str, Any]:
    """The entries of one parameter's state that are arrays (or tensors) of ``size``
    elements, in order."""
    return {k: v for k, v in state.items()
            if hasattr(v, "dtype") and getattr(v, "ndim", 0) > 0
            and (v.numel() if hasattr(v, "numel") else v.size) == size}


def _full_size(state: Any, size: int) -> list[Any]:
    """The arrays (or tensors) of one parameter's state with ``size`` elements, in order."""
    return list(_full_size_items(state, size).values())


#: clocks for :func:`paired_times`: wall time, or the calling thread's CPU time, which leaves
#: out the time the thread waits for a core on a machine with more runnable threads than cores
#: (valid only where all the work runs on the calling thread: one thread for torch and Numba)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def _inner(fn: Callable[[], Any], min_time: float) -> int:
    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, int(min_time / max(time.perf_counter() - t0, 1e-9)))


def _timed(fn: Callable[[], Any], inner: int, clock: Callable[[], float]) -> float:
    t0 = clock()
    for _ in range(inner):
        fn()
    return (clock() - t0) / inner


def clock_for(threads: int) -> str:
    """"cpu" for one thread (robust to a shared machine), "wall" otherwise."""
    return "cpu" if threads == 1 else "wall"


def paired_times(fns: dict[str, Callable[[], Any]], repeats: int = 7, min_time: float = 0.02,
                 reference: str | dict[str, str] | None = None, clock: str = "wall"
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """Best seconds per call of each function, measured interleaved, and each one's spread.

    Each function is warmed up and given an inner loop of about ``min_time``; then ``repeats``
    rounds time every function once in turn, so that all of them see the same state of a
    shared machine. Returns ``(best, spread)``: the minimum over rounds and
    ``median / minimum - 1``.

    With ``reference`` (a key of ``fns``), the reference is timed again right before every
    other function in each round, and ``best[f"{k}/{reference}"]`` is the median over rounds of
    the ratio of ``k``'s time to the reference's time just before it (``spread`` of that key:
    half the interquartile range of the ratios, relative to their median). Adjacent calls see
    the same load, so the ratio holds on a busy machine where the two best times need not come
    from equally quiet moments. ``reference`` may also map keys to their own references
    (``{"step": "step's ceiling", ...}``): each mapped key is timed right after its reference,
    the others alone, and the references only as partners. ``clock``: a key of :data:`CLOCKS`.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {list(CLOCKS)}, got {clock!r}")
    now = CLOCKS[clock]
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if isinstance(reference, dict):
        refs = dict(reference)
    elif reference is not None:
        refs = {k: reference for k in fns if k != reference}
    else:
        refs = {}
    for r in {*refs, *refs.values()} - set(fns):
        raise ValueError(f"reference {r!r} is not one of {list(fns)}")
    partners = set(refs.values()) - set(refs)
    inner = {k: _inner(fn, min_time) for k, fn in fns.items()}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    ratios: dict[str, list[float]] = {k: [] for k in refs}
    for _ in range(repeats):
        for k, fn in fns.items():
            if k in partners and k not in refs:
                continue  # timed right before each key it is the reference of
            if k in refs:
                ref = refs[k]
                t_ref = _timed(fns[ref], inner[ref], now)
                samples[ref].append(t_ref)
                t = _timed(fn, inner[k], now)
                ratios[k].append(t / t_ref)
            else:
                t = _timed(fn, inner[k], now)
            samples[k].append(t)
    best = {k: float(np.min(v)) for k, v in samples.items()}
    spread = {k: float(np.median(v) / np.min(v) - 1) for k, v in samples.items()}
    for k, r in ratios.items():
        q1, med, q3 = np.percentile(r, [25, 50, 75])
        best[f"{k}/{refs[k]}"] = float(med)
        spread[f"{k}/{refs[k]}"] = float((q3 - q1) / 2 / med)
    return best, spread


def _median_time(fn: Callable[[], Any], repeats: int, min_time: float = 0.02) -> float:
    return float(np.median(_time_samples(fn, repeats, min_time)))


def _time_samples(fn: Callable[[], Any], repeats: int, min_time: float = 0.02) -> list[float]:
    """Seconds per call, one sample per repeat (each of at least ``min_time``)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    inner = max(1, int(min_time / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def triad_bandwidth(size: int, dtype: str = "float32", repeats: int = 7) -> dict[str, float]:
    """Bytes per second of the triad and of the in-place update (see the module docstring).

    Keys: ``triad`` (4 arrays moved: b, c read, a write-allocated and written), ``triad_stream``
    (STREAM's convention, 3 arrays), ``update`` (a read and written, b read: 3 arrays).
    """
    a, b, c = (np.ones(size, dtype=dtype) for _ in range(3))
    s = np.dtype(dtype).type(1.0001)
    t_triad = _median_time(lambda: _triad(a, b, c, s), repeats)
    t_update = _median_time(lambda: _update(a, b, np.dtype(dtype).type(1e-30)), repeats)
    nbytes = a.itemsize * size
    return {"triad": 4 * nbytes / t_triad, "triad_stream": 3 * nbytes / t_triad,
            "update": 3 * nbytes / t_update}


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def peak_extra_bytes(fn: Callable[[], Any]) -> float:
    """Peak resident memory ``fn()`` adds beyond what is resident before it (bytes; NaN where
    Linux's counters are unavailable).

    Resets the kernel's peak-RSS mark (``/proc/self/clear_refs``, "5"), runs ``fn`` and reads
    ``VmHWM - VmRSS(before)``. This sees every allocator (NumPy's, torch's, Numba's), because
    glibc is first told to serve every block of 64 KiB or more with a fresh ``mmap`` (fixed
    ``M_MMAP_THRESHOLD``): otherwise a temporary freed by an earlier step is recycled from the
    heap without touching new pages and would go unseen. That setting stays for the rest of
    the process (glibc offers no way back), so call this after any timing. Free heap blocks
    are handed back (``malloc_trim``) before the measurement, so that a temporary reusing one
    is counted as well.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 16)

        def status(key: str) -> int:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1]) * 1024
            raise OSError(key)

        fn()  # state created lazily on a first step is not a temporary
        # Blocks freed earlier (by the warm-up step or anything before) stay in the heap and
        # resident, and a temporary that reuses one touches no new page: give their pages
        # back first (without this, NumPy's two temporaries read 0 at 4.2M float32 elements,
        # where glibc's dynamic mmap threshold had put them in the heap, and 2 at 8.4M).
        libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS:")
        fn()
        return float(status("VmHWM:") - before)
    except OSError:
        return float("nan")


def _share_state(state: dict[str, Any], common: dict[str, Any], size: int) -> None:
    """Point ``state``'s full-size entries at the arrays of ``common`` under the same keys
    (gradsuite's states use torch.optim's names), as tensors where ``state`` holds tensors."""
    for k, v in _full_size_items(state, size).items():
        if k in common:
            if hasattr(v, "detach"):
                import torch

                state[k] = torch.from_numpy(common[k])
            else:
                state[k] = common[k]


def _steps(name: str, size: int, dtype: str, shared: bool = False
           ) -> dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]]:
    """Each implementation's step of one ``size``-element tensor after a warm-up step, with the
    ceiling kernel over that implementation's own parameter, gradient and state
    (:func:`own_ceiling`).

    ``shared``: every implementation steps the *same* parameter, gradient and full-size state
    arrays (the Numba rule's, after its warm-up step; torch's tensors are views of them), so
    that where the arrays sit in physical memory, which moves a streaming step's bandwidth by
    up to 2x between allocations (:func:`own_ceiling`), is common to all and their time ratio
    compares the kernels alone. They take turns on the arrays; the values stay those of the
    same update rule."""
    import torch

    hyper = BENCH_HYPER[name]
    rng = np.random.default_rng(0)
    out: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {}
    common: dict[str, Any] = {}
    p0 = g0 = None
    for backend in ("numba", "numpy"):
        rule = optim.get(name, backend=backend, **hyper)
        p = [rng.standard_normal(size).astype(dtype)] if p0 is None else [p0]
        g = [(rng.standard_normal(size) * 1e-3).astype(dtype)] if g0 is None else [g0]
        st = rule.init(p)
        rule.step(p, g, st)
        if shared and p0 is None:
            p0, g0 = p[0], g[0]
            common = _full_size_items(st[0], size)
        elif shared:
            _share_state(st[0], common, size)
        out[backend] = (lambda rule=rule, p=p, g=g, st=st: rule.step(p, g, st),
                        own_ceiling(g[0], [p[0], *_full_size(st[0], size)]))

    def tensor(a: Any, scale: float = 1.0) -> Any:
        if shared:
            return torch.from_numpy(a)
        return torch.randn(size, dtype=getattr(torch, dtype)) * scale

    rule = optim.get(name, backend="torch", **hyper)
    tp = [tensor(p0)]
    tg = [tensor(g0, 1e-3)]
    tst = rule.init(tp)
    rule.step(tp, tg, tst)
    if shared:
        _share_state(tst[0], common, size)
    out["torch-backend"] = (lambda: rule.step(tp, tg, tst),
                            own_ceiling(tg[0], [tp[0], *_full_size(tst[0], size)]))
    spec = optim.get_spec(name)
    for impl in spec.torch_impls():
        param = torch.nn.Parameter(tensor(p0))
        param.grad = tensor(g0, 1e-3)
        opt = spec.torch_optimizer([param], impl, **hyper)
        opt.step()
        if shared:
            _share_state(opt.state[param], common, size)
        out[f"torch.optim-{impl}"] = (opt.step, own_ceiling(
            param.grad, [param, *_full_size(opt.state[param], size)]))
    return out


def _step_fns(name: str, size: int, dtype: str) -> dict[str, Callable[[], Any]]:
    return {k: fn for k, (fn, _) in _steps(name, size, dtype).items()}


def subject_step(subject: Any, size: int, dtype: str = "float32", **hyper: Any
                 ) -> tuple[Callable[[], Any], dict[str, Any]]:
    """A user's optimizer stepping one tensor of ``size`` elements, after one warm-up step.

    Returns ``(step, info)``; ``info`` counts the bytes a step must move from the state
    tensors the optimizer holds after its first step (every parameter, gradient and state
    tensor read once, parameter and state written once: ``3·P + 2·S``), with ``state_bytes``
    (S) and ``state_bytes_per_param_byte`` (S / P).
    """
    import torch

    from suite.subjects import resolve

    sub = resolve(subject)
    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(size, dtype=tdtype, generator=gen))
    param.grad = torch.randn(size, dtype=tdtype, generator=gen) * 1e-3
    opt = sub.make([param], **({"lr": 1e-3} | hyper))
    opt.step()
    state = getattr(opt, "state", {}).get(param, {})
    state_bytes = sum(v.numel() * v.element_size() for v in state.values()
                      if isinstance(v, torch.Tensor))
    p_bytes = size * param.element_size()
    return opt.step, {"bytes": 3 * p_bytes + 2 * state_bytes, "state_bytes": state_bytes,
                      "state_bytes_per_param_byte": state_bytes / p_bytes,
                      "ceiling": own_ceiling(param.grad, [param, *_full_size(state, size)])}


def torch_reference_step(reference: str, size: int, dtype: str = "float32", impl: str | None = None,
                         repeats: int = 3, **hyper: Any) -> tuple[Callable[[], Any], str]:
    """torch.optim's twin of ``reference`` stepping one tensor of ``size`` elements, after a
    warm-up step; ``impl`` (forloop, foreach, fused) or, if None, the fastest of them here
    (median of ``repeats``). Returns ``(step, impl)``."""
    import torch

    spec = optim.get_spec(reference)
    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(1)
    steps = {}
    for name in (spec.torch_impls() if impl is None else (impl,)):
        param = torch.nn.Parameter(torch.randn(size, dtype=tdtype, generator=gen))
        param.grad = torch.randn(size, dtype=tdtype, generator=gen) * 1e-3
        opt = spec.torch_optimizer([param], name, **({"lr": 1e-3} | hyper))
        opt.step()
        steps[name] = opt.step
    if len(steps) == 1:
        return next(iter(steps.items()))[::-1]
    best = min(steps, key=lambda k: _median_time(steps[k], repeats, min_time=0.005))
    return steps[best], best


def subject_rows(subject: Any, size: int, dtype: str, repeats: int, threads: Sequence[int]
                 ) -> tuple[list[dict[str, Any]], dict[int, Callable[[], Any]]]:
    """The roofline's rows for a user's optimizer (one per thread count) and its steps.

    Its step is timed interleaved with torch.optim's implementations of the reference it names
    (:func:`paired_times`, the same rounds), so ``speedup_vs_best_torch`` compares times taken
    under the same load; NaN without a reference. Bytes are counted from its state after one
    step (:func:`subject_step`).
    """
    from suite.subjects import resolve

    sub = resolve(subject)
    step, info = subject_step(sub, size, dtype)
    impl = f"user:{sub.import_path or sub.name}"
    fns: dict[str, Callable[[], Any]] = {impl: step}
    ceilings = {f"ceiling:{impl}": info["ceiling"]} if info["ceiling"] else {}
    if sub.reference is not None:
        for k, (f, c) in _steps(sub.reference, size, dtype).items():
            if k.startswith("torch.optim"):
                fns[k] = f
                if c is not None:
                    ceilings[f"ceiling:{k}"] = c
    pairs = {k: f"ceiling:{k}" for k in fns if f"ceiling:{k}" in ceilings}
    rows, steps = [], {}
    for t in threads:
        got = set_threads(t)
        bw = triad_bandwidth(size, dtype, 3)
        best, spread = paired_times({**ceilings, **fns}, repeats, reference=pairs,
                                    clock=clock_for(t))
        tm = best[impl]
        best_torch = min((v for k, v in best.items() if k in fns and k != impl),
                         default=np.nan)
        frac = {k: 1 / best[f"{k}/{c}"] for k, c in pairs.items()}
        torch_frac = max((v for k, v in frac.items() if k != impl), default=np.nan)
        c = pairs.get(impl)
        rows.append({"optimizer": sub.name, "config": sub.describe()["hyper"],
                     "implementation": impl, "arrays": "own", "dtype": dtype, "size": size,
                     "threads": t,
                     "clock": clock_for(t), "seconds": tm, "spread": spread[impl],
                     "bytes": info["bytes"], "GB_per_s": info["bytes"] / tm / 1e9,
                     "triad_GB_per_s": bw["triad"] / 1e9,
                     "triad_stream_GB_per_s": bw["triad_stream"] / 1e9,
                     "update_GB_per_s": bw["update"] / 1e9,
                     "fraction_of_triad": info["bytes"] / tm / bw["triad"],
                     "ceiling_GB_per_s": info["bytes"] / best[c] / 1e9 if c else np.nan,
                     "ceiling_spread": spread[c] if c else np.nan,
                     "fraction_of_ceiling": frac.get(impl, np.nan),
                     "fraction_spread": spread[f"{impl}/{c}"] if c else np.nan,
                     "speedup_vs_best_torch": best_torch / tm,
                     "speedup_vs_best_torch_per_ceiling": frac.get(impl, np.nan) / torch_frac,
                     "reference": sub.reference or "",
                     "state_bytes_per_param_byte": info["state_bytes_per_param_byte"], **got})
        steps[t] = step
    return rows, steps


def _config(hyper: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in hyper.items())


def _check_size_repeats(size: Any, repeats: Any) -> None:
    for what, v in (("size", size), ("repeats", repeats)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{what} must be a positive integer, got {v!r}")


def check_roofline_args(size: int, threads: int | Sequence[int], optimizers: Sequence[str],
                        repeats: int) -> list[int]:
    """What :func:`roofline` checks before it measures anything (ValueError naming the value
    and what was expected); returns the thread counts as a list."""
    _check_size_repeats(size, repeats)
    counts = [threads] if isinstance(threads, int) else list(threads)
    if not counts or any(not isinstance(t, int) or t < 1 for t in counts):
        raise ValueError(f"threads must be positive integers, got {threads!r}")
    unknown = [o for o in optimizers if o not in BENCH_HYPER]
    if unknown:
        raise ValueError(f"unknown optimizer(s) {', '.join(map(repr, unknown))}; expected "
                         f"names from {', '.join(BENCH_HYPER)}")
    _check_numba_cap(max(counts))
    return counts


def _check_numba_cap(threads: int) -> None:
    import numba

    cap = numba.config.NUMBA_NUM_THREADS
    if threads > cap:
        raise ValueError(f"threads={threads} asked for, but Numba was started with "
                         f"NUMBA_NUM_THREADS={cap}; set NUMBA_NUM_THREADS={threads} (or "
                         f"more) in the environment before Python starts")


def roofline(size: int = 1 << 23, threads: int | Sequence[int] = 1, dtype: str = "float32",
             optimizers: Sequence[str] = tuple(BENCH_HYPER), repeats: int = 7,
             progress: bool = False, subjects: Sequence[Any] = (), shared: bool = False
             ) -> pd.DataFrame:
    """The roofline table (see the module docstring), one block of rows per thread count.

    ``shared``: the implementations of each reference step the same arrays (:func:`_steps`;
    column ``arrays``: "shared", else "own"), so that ``speedup_vs_best_torch`` compares kernels
    rather than where each one's arrays happen to sit in memory. Users' optimizers keep their
    own arrays.

    ``subjects``: users' optimizers (anything ``suite.subjects.resolve`` accepts), rows from
    :func:`subject_rows`, timed against torch's implementations of the reference each names.

    ``threads``: one count or a list (a sweep), for torch and Numba alike. Numba can use no more
    threads than ``NUMBA_NUM_THREADS`` allowed at start-up; asking for more is an error.
    """
    counts = check_roofline_args(size, threads, optimizers, repeats)
    rows = []
    it: Any = optimizers
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(optimizers, desc="roofline", unit="optimizer")
    itemsize = np.dtype(dtype).itemsize
    for name in it:
        hyper = BENCH_HYPER[name]
        bpe = bytes_per_element(name, hyper, itemsize)
        nbytes = bpe * size
        steps = _steps(name, size, dtype, shared)
        fns = {k: fn for k, (fn, _) in steps.items()}
        ceilings = {f"ceiling:{k}": c for k, (_, c) in steps.items() if c is not None}
        pairs = {k: f"ceiling:{k}" for k in fns if f"ceiling:{k}" in ceilings}
        for t in counts:
            got = set_threads(t)
            bw = triad_bandwidth(size, dtype, 3)
            best, spread = paired_times({**ceilings, **fns}, repeats, reference=pairs,
                                        clock=clock_for(t))
            after = thread_counts()
            if after != got:
                raise RuntimeError(f"thread counts changed during the measurement: set {got}, "
                                   f"now {after}; the timings are not for {t} thread(s)")
            # median of per-round ratios to the implementation's own ceiling timed just before
            frac = {k: 1 / best[f"{k}/{c}"] for k, c in pairs.items()}
            best_torch = min(v for k, v in best.items() if k.startswith("torch.optim"))
            best_torch_frac = max((v for k, v in frac.items() if k.startswith("torch.optim")),
                                  default=np.nan)
            for impl in fns:
                tm = best[impl]
                c = pairs.get(impl)
                rows.append({"optimizer": name, "config": _config(hyper),
                             "implementation": impl, "arrays": "shared" if shared else "own",
                             "dtype": dtype, "size": size,
                             "threads": t, "clock": clock_for(t), "seconds": tm,
                             "spread": spread[impl],
                             "bytes": nbytes, "GB_per_s": nbytes / tm / 1e9,
                             "ceiling_GB_per_s": nbytes / best[c] / 1e9 if c else np.nan,
                             "ceiling_spread": spread[c] if c else np.nan,
                             "fraction_of_ceiling": frac.get(impl, np.nan),
                             "fraction_spread": spread[f"{impl}/{c}"] if c else np.nan,
                             "triad_GB_per_s": bw["triad"] / 1e9,
                             "triad_stream_GB_per_s": bw["triad_stream"] / 1e9,
                             "update_GB_per_s": bw["update"] / 1e9,
                             "fraction_of_triad": nbytes / tm / bw["triad"],
                             "speedup_vs_best_torch": best_torch / tm,
                             "speedup_vs_best_torch_per_ceiling":
                                 frac.get(impl, np.nan) / best_torch_frac, **got})
        del steps, fns, ceilings
    user_steps = {}
    for subject in subjects:
        urows, ustep = subject_rows(subject, size, dtype, repeats, counts)
        rows.extend(urows)
        user_steps[urows[0]["optimizer"], urows[0]["implementation"]] = ustep
    frame = pd.DataFrame(rows)
    per_param = (frame["bytes"] / (frame["size"] * itemsize) - 3) / 2  # bytes = 3·P + 2·S
    frame["state_bytes_per_param_byte"] = (frame["state_bytes_per_param_byte"].fillna(per_param)
                                           if "state_bytes_per_param_byte" in frame
                                           else per_param)
    # memory last: peak_extra_bytes changes the allocator's policy for the rest of the process
    temps = {}
    for name in optimizers:
        fns = _step_fns(name, size, dtype)
        for t in counts:
            set_threads(t)
            for impl, fn in fns.items():
                temps[name, impl, t] = peak_extra_bytes(fn) / (size * itemsize)
        del fns
    for (name, impl), by_t in user_steps.items():
        for t, fn in by_t.items():
            set_threads(t)
            temps[name, impl, t] = peak_extra_bytes(fn) / (size * itemsize)
    frame["temporaries"] = [temps[r.optimizer, r.implementation, r.threads]
                            for r in frame.itertuples()]
    return frame


def compute_bound(optimizers: Sequence[str] = tuple(BENCH_HYPER), threads: int = 1,
                  small: int = 1 << 18, large: int = 1 << 23, dtype: str = "float32",
                  repeats: int = 7) -> pd.DataFrame:
    """Which resource bounds each Numba step: its time per element with every array in cache
    (``small`` elements: 1 MiB of float32 per array, in L2/L3) and from memory (``large``), next to the paired ceiling's time per
    element from memory, all on ``threads`` threads (Numba's steps split in ``threads`` chunks
    at both sizes), interleaved, best of ``repeats``.

    ``bound`` is "compute" where the in-cache step alone takes at least 90 % of the memory
    floor (the ceiling's time): then no memory system makes it reach the ceiling, and its
    arithmetic (on x86, the divide/square-root unit) is the limit; "memory" otherwise;
    "inconclusive" where the in-cache step per element took over 1.5x the step from memory (the
    small measurement was dominated by waiting: for a core on a loaded machine, or for
    threads to wake).
    """
    from suite.optim import numba_kernels as K

    got = set_threads(threads)
    if got["numba_threads"] != threads:
        raise ValueError(f"threads={threads} asked for, but Numba runs {got['numba_threads']}")
    itemsize = np.dtype(dtype).itemsize
    rows = []
    saved = K.CHUNKS
    K.CHUNKS = threads
    try:
        for name in optimizers:
            hyper = BENCH_HYPER[name]
            bpe = bytes_per_element(name, hyper, itemsize)
            fns = {}
            for size in (small, large):
                rule = optim.get(name, backend="numba", **hyper)
                rng = np.random.default_rng(0)
                p = [rng.standard_normal(size).astype(dtype)]
                g = [(rng.standard_normal(size) * 1e-3).astype(dtype)]
                st = rule.init(p)
                rule.step(p, g, st)
                # the backend function itself: Rule.step's input checks (~50 us) would count
                # ~0.2 ns per element at 2**18 elements
                fns[size] = (lambda f=K.RULES[name], p=p[0], g=g[0], st=st[0], h=rule.hyper:
                             f(p, g, st, **h))
            ceil = own_ceiling(g[0], [p[0], *_full_size(st[0], large)]) or ceiling_kernel(
                (bpe // itemsize - 1) // 2, large, dtype)
            best, spread = paired_times({"ceiling": ceil, "small": fns[small],
                                         "large": fns[large]}, repeats, reference="ceiling",
                                        clock=clock_for(threads))
            ns_small = best["small"] / small * 1e9
            ns_large = best["large"] / large * 1e9
            ns_floor = best["ceiling"] / large * 1e9
            # paired ratios (each size against the ceiling timed just before it)
            in_cache_over_floor = best["small/ceiling"] * large / small
            fraction = 1 / best["large/ceiling"]
            rows.append({"optimizer": name, "config": _config(hyper), "threads": threads,
                         "clock": clock_for(threads), "ns_per_element_in_cache": ns_small,
                         "ns_per_element_from_memory": ns_large,
                         "ns_per_element_memory_floor": ns_floor,
                         "fraction_of_ceiling": fraction,
                         "in_cache_over_floor": in_cache_over_floor,
                         "spread": max(spread["small/ceiling"], spread["large/ceiling"]),
                         "bound": ("inconclusive" if ns_small > 1.5 * ns_large
                                   else "compute" if in_cache_over_floor >= 0.9 else "memory"),
                         **got})
    finally:
        K.CHUNKS = saved
    return pd.DataFrame(rows)


#: softmax and log_softmax are timed on rows of this many elements
SOFTMAX_ROW = 1000
#: activations timed by :func:`activation_speed` besides ``activations.NAMES`` (their
#: defaults): label -> (name, parameters)
ACTIVATION_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "gelu(approximate=tanh)": ("gelu", {"approximate": "tanh"})}


def check_activation_args(names: Sequence[str] | None, size: int, threads: int,
                          repeats: int) -> list[str]:
    """What :func:`activation_speed` checks before it measures anything (ValueError naming the
    value and what was expected); returns the activation labels to time."""
    from suite import activations

    _check_size_repeats(size, repeats)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    _check_numba_cap(threads)
    labels = list(names or (*activations.NAMES, *ACTIVATION_VARIANTS))
    unknown = [a for a in labels if a not in activations.NAMES and a not in ACTIVATION_VARIANTS]
    if unknown:
        raise ValueError(f"unknown activation(s) {', '.join(map(repr, unknown))}; expected "
                         f"names from {', '.join((*activations.NAMES, *ACTIVATION_VARIANTS))}")
    rowwise = [a for a in labels if a in ("softmax", "log_softmax")]
    if rowwise and size % SOFTMAX_ROW:
        raise ValueError(f"size must be a multiple of {SOFTMAX_ROW} for {', '.join(rowwise)} "
                         f"(rows of {SOFTMAX_ROW}), got {size}")
    return labels


def activation_speed(names: Sequence[str] | None = None, size: int = 1_000_000,
                     threads: int = 1, repeats: int = 9) -> pd.DataFrame:
    """Forward + backward of each activation on ``size`` float32 elements: ours (``numba``:
    forward then backward; ``numba-fused``: ``forward_backward``; ``numpy``) against torch's
    function plus autograd's backward, in one process on ``threads`` threads. ``names``:
    activation names or labels of :data:`ACTIVATION_VARIANTS` (default: all of both).

    Each implementation is timed right after torch in every round (:func:`paired_times`), and
    ``speedup`` is the median over rounds of torch's time over ours (> 1: ours faster;
    ``spread``: half its interquartile range, relative). softmax and log_softmax run on
    rows of 1000.
    """
    import torch

    from suite import activations

    labels = check_activation_args(names, size, threads, repeats)
    got = set_threads(threads)
    rows = []
    for label in labels:
        name, params = ACTIVATION_VARIANTS.get(label, (label, {}))
        x = np.random.default_rng(0).standard_normal(size).astype(np.float32)
        dy = np.ones(size, dtype=np.float32)
        if name in ("softmax", "log_softmax"):
            x, dy = x.reshape(-1, SOFTMAX_ROW), dy.reshape(-1, SOFTMAX_ROW)
        tx = torch.from_numpy(x).requires_grad_(True)
        tdy = torch.from_numpy(dy)
        f_t = activations.get(name, **params).torch_fn()

        def torch_fb(tx: Any = tx, tdy: Any = tdy, f_t: Any = f_t) -> None:
            tx.grad = None
            f_t(tx).backward(tdy)

        nb = activations.get(name, backend="numba", **params)
        npy = activations.get(name, backend="numpy", **params)
        fns = {"torch": torch_fb,
               "numba": lambda a=nb, x=x, dy=dy: (a.forward(x), a.backward(x, dy)),
               "numba-fused": lambda a=nb, x=x, dy=dy: a.forward_backward(x, dy),
               "numpy": lambda a=npy, x=x, dy=dy: (a.forward(x), a.backward(x, dy))}
        best, spread = paired_times(fns, repeats, reference="torch", clock=clock_for(threads))
        rows.extend({"activation": label, "implementation": impl, "size": size,
                     "threads": threads, "clock": clock_for(threads), "seconds": best[impl],
                     "torch_seconds": best["torch"],
                     "speedup": 1 / best[f"{impl}/torch"], "spread": spread[f"{impl}/torch"],
                     **got}
                    for impl in ("numba", "numba-fused", "numpy"))
    return pd.DataFrame(rows)


def sweep_threads() -> list[int]:
    """1 .. the cores this process may use, capped by the threads Numba was started with."""
    import os

    import numba

    return list(range(1, min(len(os.sched_getaffinity(0)),
                             numba.config.NUMBA_NUM_THREADS) + 1))


def parallel_threshold(sizes: Sequence[int] = tuple(1 << k for k in range(10, 23, 2)),
                       optimizers: Sequence[str] = ("sgd", "adam"), dtype: str = "float32",
                       repeats: int = 7) -> pd.DataFrame:
    """Serial against chunked Numba steps per size, on all of Numba's threads: where the
    chunked step starts to win is :data:`suite.optim.numba_kernels.PARALLEL_MIN_SIZE`.

    Times the kernels directly (``rule.step`` would choose by itself), interleaved, best of
    ``repeats``; ``speedup`` is serial time over chunked time.
    """
    import numba

    from suite.optim import numba_kernels as K

    threads = numba.get_num_threads()
    rows = []
    for name in optimizers:
        for size in sizes:
            rule = optim.get(name, backend="numba", **BENCH_HYPER[name])
            rng = np.random.default_rng(0)
            p = [rng.standard_normal(size).astype(dtype)]
            g = [(rng.standard_normal(size) * 1e-3).astype(dtype)]
            st = rule.init(p)
            rule.step(p, g, st)
            calls = {}
            for mode in ("serial", "chunked"):
                chunks = 1 if mode == "serial" else threads

                def fn(chunks: int = chunks, rule: Any = rule, p: Any = p, g: Any = g,
                       st: Any = st) -> None:
                    saved = K.PARALLEL_MIN_SIZE
                    K.PARALLEL_MIN_SIZE = 0 if chunks > 1 else 1 << 62
                    try:
                        rule.step(p, g, st)
                    finally:
                        K.PARALLEL_MIN_SIZE = saved
                calls[mode] = fn
            best, _ = paired_times(calls, repeats, min_time=0.005)
            rows.append({"optimizer": name, "size": size, "threads": threads,
                         "serial_s": best["serial"], "chunked_s": best["chunked"],
                         "speedup": best["serial"] / best["chunked"]})
    return pd.DataFrame(rows)


def speedups(bench: pd.DataFrame, ours: Sequence[str] = ("numba", "numba-fused"),
             stat: str = "median") -> pd.DataFrame:
    """Per pytest-benchmark group (one operation at one size and thread count): each of
    ``ours``'s ``stat`` time and the ratio of every other implementation's time to it (> 1:
    ours is faster). ``bench`` is :func:`suite.report.load.read_benchmark_json`'s frame of a run
    whose benchmarks record ``extra_info["impl"]`` (``tests/test_benchmarks.py``)."""
    if "extra_impl" not in bench:
        raise ValueError("the benchmarks carry no extra_info['impl']: run tests/test_benchmarks.py "
                         "of this version with --benchmark-json")
    t = bench.pivot_table(index="group", columns="extra_impl", values=stat, aggfunc="first")
    rows = []
    for group, r in t.iterrows():
        for o in ours:
            if o not in r or not np.isfinite(r[o]):
                continue
            row: dict[str, Any] = {"group": group, "ours": o, f"{stat}_ms": r[o] * 1e3}
            for other in t.columns:
                if other not in ours and np.isfinite(r[other]):
                    row[f"vs {other}"] = r[other] / r[o]
            rows.append(row)
    return pd.DataFrame(rows)

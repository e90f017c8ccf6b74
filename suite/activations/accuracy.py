"""How many ulps each activation is off the exact value: ours (three backends) and torch's.

>>> from suite.activations import accuracy
>>> table = accuracy.table()                 # one row per function x quantity x dtype x impl
>>> table[~table.passed]                     # the cells over the bound (torch's, today)

The truth is mpmath at 40 significant digits, evaluated on the exact value of every input, and
kept as a pair of float64 numbers (hi + lo), so that errors are measured to a fraction of an ulp
in float64 too. An error is ``|got - truth| / ulp(truth)`` with ulp the spacing of the target
dtype at the truth (subnormal spacing below the smallest normal number).

The bound
---------
An implementation passes a cell when at every input x

    error(x) <= L + κ(x)

where κ(x) = |x g'(x) / g(x)| is the condition number of the quantity g itself (g = f for the
forward value, g = f' for the derivative): rounding any intermediate argument (x/√2, 2x, βx) to
the working precision costs up to κ ulps, which no implementation that rounds there avoids.
L is :data:`BOUNDS` (1 ulp float32 / 4 ulp float64 for the numpy and torch backends; 2 / 4
for numba). softmax and log_softmax forward: :data:`SOFTMAX_BOUNDS` (2 / 8 ulps) on rows of up
to 1000 logits, including a dominant one, without κ. torch's own functions are measured
against the same bounds.

Frames (:func:`table`): ``function`` (``gelu`` or ``gelu(approximate=tanh)``), ``name``,
``params``, ``quantity`` (``forward`` or ``derivative``: backward with dy = 1),
``dtype``, ``implementation`` (``numpy``, ``numba``, ``torch`` — our backends — and
``torch.nn.functional`` with autograd), ``points``, ``max_ulp`` (largest error),
``max_excess`` (largest error - κ), ``worst_x``, ``expected``, ``got``, ``kappa`` (at the worst
point), ``bound`` (L), ``passed``, ``false_zeros`` (exact 0 where the truth is a normal
number), ``nonfinite`` (inf or NaN where the truth is finite).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from suite import activations as A

DIGITS = 40
BOUNDS: dict[str, dict[str, float]] = {
    "numpy": {"float32": 1.0, "float64": 4.0},
    "torch": {"float32": 1.0, "float64": 4.0},
    "numba": {"float32": 2.0, "float64": 4.0},
    "torch.nn.functional": {"float32": 1.0, "float64": 4.0},
}
SOFTMAX_BOUNDS = {"float32": 2.0, "float64": 8.0}
IMPLEMENTATIONS = ("numpy", "numba", "torch", "torch.nn.functional")
#: the built-in activations with their default parameters, and gelu's tanh form
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = tuple(
    [(n, {}) for n in A.NAMES] + [("gelu", {"approximate": "tanh"})])
#: where the tails end: beyond, every quantity is 0, 1 or x in the dtype
TAIL = {"float32": 90.0, "float64": 710.0}
#: points where a derivative crosses 0 (silu, gelu, gelu-tanh) and other edges
SPECIAL = (0.0, -1.2784645427610738, -0.7517915243, -0.7524, 1.0, -1.0, 0.5, -0.5, 8.0, -8.0,
           19.0, 20.0, 21.0, -20.0, 36.75, -36.75, 40.0, -40.0)


def label(name: str, params: dict[str, Any]) -> str:
    if not params:
        return name
    return f"{name}({', '.join(f'{k}={v}' for k, v in params.items())})"


# ---- the grid ---------------------------------------------------------------------------

def grid(dtype: str, n: int = 200, seed: int = 0) -> np.ndarray:
    """Sorted unique inputs of ``dtype``: ±1e-30..1e3 log-spaced, the tails out to
    :data:`TAIL` linearly, :data:`SPECIAL` with their neighbours, and uniform draws in ±10."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    mag = np.logspace(-30, 3, n)
    tail = np.linspace(0, TAIL[dtype], n)
    core = rng.uniform(-10, 10, n)
    special = np.asarray(SPECIAL, dtype=dt)
    near = np.concatenate([np.nextafter(special, dt.type(np.inf)),
                           np.nextafter(special, dt.type(-np.inf))])
    x = np.concatenate([mag, -mag, tail, -tail, core]).astype(dt)
    return np.unique(np.concatenate([x, special, near]))


# ---- the truth --------------------------------------------------------------------------

def _mp() -> Any:
    import mpmath

    return mpmath


def _sig(mp: Any, x: Any) -> Any:
    return 1 / (1 + mp.exp(-x))


def _sigp(mp: Any, x: Any) -> Any:
    e = mp.exp(-abs(x))
    return e / (1 + e) ** 2


def _fns(name: str, params: dict[str, Any]) -> Callable[[Any, Any], tuple[Any, Any, Any]]:
    """(f, f', f'') at an mpf x, for a built-in activation with resolved parameters."""
    if name == "sigmoid":
        return lambda mp, x: (_sig(mp, x), _sigp(mp, x), -_sigp(mp, x) * mp.tanh(x / 2))
    if name == "tanh":
        return lambda mp, x: (mp.tanh(x), mp.sech(x) ** 2, -2 * mp.tanh(x) * mp.sech(x) ** 2)
    if name == "relu":
        return lambda mp, x: (max(x, 0), mp.mpf(0 if x <= 0 else 1), mp.mpf(0))
    if name == "leaky_relu":
        a = params["negative_slope"]
        return lambda mp, x: (x if x > 0 else x * a, mp.mpf(1 if x > 0 else a), mp.mpf(0))
    if name in ("elu", "selu"):
        a = params["alpha"] if name == "elu" else A.SELU_ALPHA
        c = 1.0 if name == "elu" else A.SELU_SCALE

        def elu(mp: Any, x: Any) -> tuple[Any, Any, Any]:
            if x > 0:
                return c * x, mp.mpf(c), mp.mpf(0)
            return c * a * mp.expm1(x), c * a * mp.exp(x), c * a * mp.exp(x)

        return elu
    if name == "softplus":
        b = params["beta"]
        return lambda mp, x: (mp.log1p(mp.exp(b * x)) / b, _sig(mp, b * x),
                              b * _sigp(mp, b * x))
    if name == "gelu" and params["approximate"] == "tanh":
        def gelu_tanh(mp: Any, x: Any) -> tuple[Any, Any, Any]:
            beta, kappa = mp.mpf(A._GELU_BETA), mp.mpf(A._GELU_KAPPA)
            v = 2 * beta * (x + kappa * x**3)
            v1 = 2 * beta * (1 + 3 * kappa * x**2)
            v2 = 12 * beta * kappa * x
            s, sp = _sig(mp, v), _sigp(mp, v)
            return (x * s, s + x * v1 * sp,
                    sp * (2 * v1 + x * v2 - x * v1**2 * mp.tanh(v / 2)))

        return gelu_tanh
    if name == "gelu":
        return lambda mp, x: (x * mp.ncdf(x), mp.ncdf(x) + x * mp.npdf(x),
                              mp.npdf(x) * (2 - x**2))
    if name == "silu":
        return lambda mp, x: (x * _sig(mp, x), _sig(mp, x) * (1 + x * _sig(mp, -x)),
                              _sigp(mp, x) * (2 - x * mp.tanh(x / 2)))
    raise ValueError(f"no elementwise truth for {name!r}")


def _split(v: Any) -> tuple[float, float]:
    hi = float(v)
    if not np.isfinite(hi):
        return hi, 0.0
    return hi, float(v - hi)


def truth(name: str, x: np.ndarray, quantity: str = "forward", **params: Any
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hi, lo, κ) for an elementwise activation at the exact values of ``x``.

    hi + lo is the exact value of ``quantity`` (``forward`` or ``derivative``) to ~32 digits;
    κ the condition number |x g'/g| of that quantity (0 where g is exactly 0). torch's API
    definitions are kept: softplus returns x (derivative 1) where ``x * beta > threshold``
    in x's dtype, relu'(0) = 0, elu'(0) = alpha."""
    if quantity not in ("forward", "derivative"):
        raise ValueError(f"quantity={quantity!r}; expected 'forward' or 'derivative'")
    spec = A.ACTIVATIONS[name]
    p = A._check_params(spec, params)
    fns = _fns(name, p)
    mp = _mp()
    xs = np.asarray(x)
    above = (xs * xs.dtype.type(p["beta"]) > p["threshold"]) if name == "softplus" else \
        np.zeros(xs.shape, bool)
    hi, lo, kappa = (np.empty(xs.shape, np.float64) for _ in range(3))
    with mp.workdps(DIGITS):
        for i, (xi, ab) in enumerate(zip(xs.reshape(-1).tolist(), above.reshape(-1),
                                         strict=True)):
            xm = mp.mpf(xi)
            if ab:
                f, f1, f2 = xm, mp.mpf(1), mp.mpf(0)
            else:
                f, f1, f2 = fns(mp, xm)
            g, g1 = (f, f1) if quantity == "forward" else (f1, f2)
            hi.flat[i], lo.flat[i] = _split(g)
            kappa.flat[i] = 0.0 if g == 0 else float(abs(xm * g1 / g))
    return hi, lo, kappa


def softmax_truth(x: np.ndarray, log: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) of softmax or log_softmax over the last axis, at the exact values of x."""
    mp = _mp()
    rows = np.asarray(x).reshape(-1, x.shape[-1])
    hi, lo = np.empty(rows.shape), np.empty(rows.shape)
    with mp.workdps(DIGITS):
        for i, row in enumerate(rows.tolist()):
            m = max(row)
            es = [mp.exp(mp.mpf(v) - m) for v in row]
            s = mp.fsum(es)
            for j, (v, e) in enumerate(zip(row, es, strict=True)):
                val = (mp.mpf(v) - m) - mp.log(s) if log else e / s
                hi[i, j], lo[i, j] = _split(val)
    return hi.reshape(x.shape), lo.reshape(x.shape)


def softmax_rows(dtype: str, width: int = 1000, seed: int = 0) -> np.ndarray:
    """Rows of logits: N(0, 1), N(0, 10²), a dominant logit over N(0, 1), and a spread row."""
    rng = np.random.default_rng(seed)
    dominant = rng.standard_normal(width)
    dominant[width // 3] = 20.0 if dtype == "float32" else 40.0
    spread = rng.uniform(-60, 20, width)
    rows = np.stack([rng.standard_normal(width), 10 * rng.standard_normal(width), dominant,
                     spread])
    return rows.astype(dtype)


# ---- errors -----------------------------------------------------------------------------

def ulp(value: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype`` at |value| (its largest spacing beyond its range)."""
    info = np.finfo(dtype)
    # the largest number below max: max's own spacing overflows to inf
    top = float(np.nextafter(info.max, info.dtype.type(0)))
    v = np.minimum(np.abs(np.asarray(value, np.float64)), top)
    return np.spacing(v.astype(dtype)).astype(np.float64)


def ulp_error(got: np.ndarray, hi: np.ndarray, lo: np.ndarray, dtype: str) -> np.ndarray:
    """|got - (hi + lo)| / ulp(truth) in ``dtype``; inf where got is inf or NaN and the truth
    rounded to ``dtype`` is finite, 0 where got is the infinity the truth rounds to (a true
    value beyond ``dtype``'s largest number plus half its spacing, e.g. selu(x) for float32 x
    above FLT_MAX / 1.0507, is inf when correctly rounded)."""
    g = np.asarray(got, np.float64)
    with np.errstate(all="ignore"):
        err = np.abs((g - hi) - lo) / ulp(hi, dtype)
        rounded = (np.asarray(hi, np.float64) + lo).astype(dtype).astype(np.float64)
    same = (g == rounded) & np.isinf(rounded)
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


# ---- evaluating the implementations -----------------------------------------------------

def _evaluate(impl: str, name: str, params: dict[str, Any], x: np.ndarray, quantity: str
              ) -> np.ndarray:
    if impl == "torch.nn.functional":
        import torch

        tx = torch.from_numpy(x.copy()).requires_grad_(quantity == "derivative")
        y = A.ACTIVATIONS[name].torch_fn(**params)(tx)
        if quantity == "forward":
            return y.detach().numpy()
        y.backward(torch.ones_like(y))
        return tx.grad.numpy()  # type: ignore[union-attr]
    act = A.get(name, backend=impl, **params)
    ax: Any = x
    if impl == "torch":
        import torch

        ax = torch.from_numpy(x.copy())
    out = act.forward(ax) if quantity == "forward" else act.derivative(ax)
    return np.asarray(out)


@functools.lru_cache(maxsize=256)
def _cached_truth(name: str, params: tuple[tuple[str, Any], ...], dtype: str, n: int,
                  quantity: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = grid(dtype, n)
    return (x, *truth(name, x, quantity, **dict(params)))


def _row(name: str, params: dict[str, Any], quantity: str, dtype: str, impl: str,
         x: np.ndarray, got: np.ndarray, hi: np.ndarray, lo: np.ndarray, kappa: np.ndarray,
         bound: float) -> dict[str, Any]:
    err = ulp_error(got, hi, lo, dtype)
    excess = err - kappa
    k = int(np.argmax(excess))
    g = np.asarray(got, np.float64)
    return {
        "function": label(name, params), "name": name,
        "params": ", ".join(f"{a}={b}" for a, b in params.items()),
        "quantity": quantity, "dtype": dtype, "implementation": impl,
        "points": int(x.size), "max_ulp": float(err.max()), "max_excess": float(excess.flat[k]),
        "worst_x": float(x.flat[k]), "expected": float(hi.flat[k]), "got": float(g.flat[k]),
        "kappa": float(kappa.flat[k]), "bound": bound,
        "passed": bool(np.all(err <= bound + kappa)),
        "false_zeros": int(np.sum((g == 0) & (np.abs(hi) >= np.finfo(dtype).tiny))),
        "nonfinite": int(np.sum(~np.isfinite(g) & np.isfinite(hi))),
    }


def table(variants: Sequence[tuple[str, dict[str, Any]]] = VARIANTS,
          dtypes: Sequence[str] = ("float32", "float64"),
          implementations: Sequence[str] = IMPLEMENTATIONS, n: int = 200,
          width: int = 1000, progress: bool = False) -> pd.DataFrame:
    """The accuracy table (see the module docstring for the columns).

    ``n`` sets the grid's density (:func:`grid`); ``width`` the softmax rows' length. The
    truths are cached per (variant, dtype, n, quantity), so a second call is fast."""
    unknown = [i for i in implementations if i not in IMPLEMENTATIONS]
    if unknown:
        raise ValueError(f"unknown implementation(s) {unknown}; expected some of "
                         f"{', '.join(IMPLEMENTATIONS)}")
    rows = []
    jobs = [(name, params, dtype) for name, params in variants for dtype in dtypes]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="activation accuracy", unit="cell")
    for name, params, dtype in jobs:
        p = A._check_params(A.ACTIVATIONS[name], params)
        shown = {k: v for k, v in p.items() if k in params}
        if name in ("softmax", "log_softmax"):
            x = softmax_rows(dtype, width)
            hi, lo = _cached_softmax(dtype, width, name == "log_softmax")
            for impl in implementations:
                got = _evaluate(impl, name, p, x, "forward")
                rows.append(_row(name, shown, "forward", dtype, impl, x, got, hi, lo,
                                 np.zeros_like(hi), SOFTMAX_BOUNDS[dtype]))
            continue
        for quantity in ("forward", "derivative"):
            x, hi, lo, kappa = _cached_truth(name, tuple(sorted(p.items())), dtype, n,
                                             quantity)
            for impl in implementations:
                got = _evaluate(impl, name, p, x, quantity)
                rows.append(_row(name, shown, quantity, dtype, impl, x, got, hi, lo, kappa,
                                 BOUNDS[impl][dtype]))
    return pd.DataFrame(rows)


@functools.lru_cache(maxsize=16)
def _cached_softmax(dtype: str, width: int, log: bool) -> tuple[np.ndarray, np.ndarray]:
    return softmax_truth(softmax_rows(dtype, width), log)


def pivot(frame: pd.DataFrame, value: str = "max_excess") -> pd.DataFrame:
    """One row per function x quantity x dtype, one column per implementation."""
    return frame.pivot_table(index=["function", "quantity", "dtype"], columns="implementation",
                             values=value, aggfunc="max", sort=False)


#: grid density per ``gradsuite run --size``
RUN_POINTS = {"quick": 40, "default": 200, "full": 1000}


def run_part(size: str = "default") -> dict[str, pd.DataFrame]:
    """The ``accuracy`` part of ``gradsuite run``: the table at the size's grid density."""
    return {"accuracy": table(n=RUN_POINTS[size], progress=True)}


# ---- exhaustive float32 -----------------------------------------------------------------

def exhaustive_float32(name: str, quantity: str = "forward", backend: str = "numba",
                       reference_backend: str = "numpy", chunk: int = 1 << 24,
                       start: int = 0, stop: int = 1 << 32, **params: Any) -> dict[str, Any]:
    """Every finite float32 bit pattern in [start, stop): ``backend``'s float32 result
    against ``reference_backend``'s float64 path, in float32 ulps.

    The float64 path stands in for the truth (its own error, a few float64 ulps times κ, is
    ~1e-8 float32 ulps); it is a different code path when the backends differ (numba: Cody's
    rational erfcx, suite.activations.vecmath_erf; numpy: Faddeeva erfcx). The bound is the
    module's: error <= L + κ, κ = |x g'/g| of the quantity g, here from the float64 path (g' of
    the forward value is the reference's derivative; of the derivative, a central difference of
    it with step 2^-20 |x|). Returns the count of inputs, the largest error and where it is,
    the largest error - κ and where it is, and how many inputs exceed the bound."""
    act = A.get(name, backend=backend, **params)
    ref = A.get(name, backend=reference_backend, **params)
    worst, worst_x, over, count = -np.inf, float("nan"), 0, 0
    excess, excess_x = -np.inf, float("nan")
    for lo_bits in range(start, stop, chunk):
        bits = np.arange(lo_bits, min(lo_bits + chunk, stop), dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        x = x[np.isfinite(x)]
        count += x.size
        f = act.forward if quantity == "forward" else act.derivative
        g = ref.forward if quantity == "forward" else ref.derivative
        if backend == "torch":
            import torch

            got = f(torch.from_numpy(x)).numpy()
        else:
            got = f(x)
        xd = x.astype(np.float64)
        want = g(xd)
        kappa = _kappa64(ref, quantity, xd, want)
        err = ulp_error(got, want, np.zeros_like(want), "float32")
        over += int(np.sum(err > BOUNDS[backend]["float32"] + kappa))
        k = int(np.argmax(err))
        if err[k] > worst:
            worst, worst_x = float(err[k]), float(x[k])
        ex = err - kappa
        k = int(np.argmax(ex))
        if ex[k] > excess:
            excess, excess_x = float(ex[k]), float(x[k])
    return {"function": label(name, params), "quantity": quantity, "backend": backend,
            "inputs": count, "max_ulp": worst, "worst_x": worst_x, "max_excess": excess,
            "excess_x": excess_x, "over_bound": over, "bound": BOUNDS[backend]["float32"]}


def _kappa64(ref: Any, quantity: str, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """κ = |x g'(x) / g(x)| from a float64 path ``ref`` (0 where g = 0, as in :func:`truth`):
    g' is ``ref.derivative`` for the forward value; for the derivative, the central
    difference (g(x + δ) - g(x - δ)) / 2δ with δ = 2^-20 max(|x|, 2^-1000) (its error,
    ~2^-40 relative plus rounding ~2^-32, is far below what a bound term needs)."""
    with np.errstate(all="ignore"):
        if quantity == "forward":
            g1 = ref.derivative(x)
        else:
            d = np.abs(x) * 2.0**-20
            d = np.maximum(d, 2.0**-1000)
            g1 = (ref.derivative(x + d) - ref.derivative(x - d)) / (2 * d)
        kappa = np.abs(x * g1 / g)
    return np.where(g == 0, 0.0, np.nan_to_num(kappa, nan=0.0, posinf=np.inf))


# ---- series at the derivatives' zeros ---------------------------------------------------

def derivative_zero_series(name: str, degree: int = 24, guess: float | None = None,
                           **params: Any) -> tuple[float, float, tuple[float, ...]]:
    """(x0_hi, x0_lo, (c_1, ..., c_degree)): the zero x0 = x0_hi + x0_lo of f' near ``guess``
    and the Taylor coefficients of f'(x0 + h) = Σ c_k h^k, computed with mpmath at 60 digits.

    Near x0 the formula for f' cancels (its condition number is unbounded there); the series
    in h = (x - x0_hi) - x0_lo keeps the relative accuracy (see suite.activations._series)."""
    mp = _mp()
    p = A._check_params(A.ACTIVATIONS[name], params)
    fns = _fns(name, p)
    with mp.workdps(60):
        x0 = mp.findroot(lambda x: fns(mp, x)[1], mp.mpf(guess if guess is not None else -1.0))
        coeffs = mp.taylor(lambda x: fns(mp, x)[1], x0, degree)
        hi = float(x0)
        return hi, float(x0 - hi), tuple(float(c) for c in coeffs[1:])

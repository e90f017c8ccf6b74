"""Numba steps split across threads (suite.optim.numba_kernels.parallel) and the roofline's
measurements (suite.bench): results bit-identical for every chunking and thread count, the
ceiling measured with the step's own access pattern, temporaries independent of the size."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from suite import bench, optim
from suite.optim import configs
from suite.optim import numba_kernels as K

SIZE = 4099  # not a multiple of the chunk alignment: the last chunk is short


def _run(name, hyper, dtype, chunks, monkeypatch, steps=3):
    """``steps`` Numba steps from one fixed start with ``chunks`` chunks (None: serial)."""
    monkeypatch.setattr(K, "CHUNKS", chunks)
    rng = np.random.default_rng(1)
    p = [rng.standard_normal(SIZE).astype(dtype)]
    rule = optim.get(name, backend="numba", **hyper)
    st = rule.init(p)
    for _ in range(steps):
        g = [rng.standard_normal(SIZE).astype(dtype)]
        rule.step(p, g, st)
    return [p[0], *(v for k, v in sorted(st[0].items()) if isinstance(v, np.ndarray))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", [n for n, s in optim.OPTIMIZERS.items() if s.elementwise])
def test_chunked_steps_are_bit_identical_to_serial(name, dtype, monkeypatch):
    """Every configuration of the table (every branch of every kernel), serial against 2, 3
    and 7 chunks: parameter and every state array equal bit for bit."""
    for cfg in configs.configs_for(name):
        hyper = cfg.hyper
        serial = _run(name, hyper, dtype, None, monkeypatch)
        for chunks in (2, 3, 7):
            chunked = _run(name, hyper, dtype, chunks, monkeypatch)
            assert len(chunked) == len(serial)
            for a, b in zip(serial, chunked, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{cfg} chunks={chunks}")
    # and the chunked driver did run (not the serial kernel under another name)
    assert getattr(K, f"{name.replace('adamw', 'adam')}_step").chunked.signatures


def test_chunked_driver_covers_every_element():
    """A kernel that writes its element's index + 1: every element written exactly once,
    whatever the chunking (a wrong bound would leave zeros or raise)."""
    from numba import njit

    @njit
    def count(out, seen):
        for i in range(out.size):
            out[i] += 1.0
            seen[i] += 1.0

    run = K.parallel(count)
    for n in (1, 15, 16, 17, 1000, 4099):
        for chunks in (1, 2, 3, 7, 64):
            out, seen = np.zeros(n), np.zeros(n)
            run(out, seen, chunks=chunks)
            np.testing.assert_array_equal(seen, np.ones(n), err_msg=f"n={n} chunks={chunks}")


def test_parallel_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"chunks must be >= 1, got 0"):
        K.adagrad_step(np.ones(4), np.ones(4), np.ones(4), 1.0, 0.0, 1e-10, False, chunks=0)
    with pytest.raises(ValueError, match=r"one size, got \[4, 3, 4\]"):
        K.adagrad_step(np.ones(4), np.ones(3), np.ones(4), 1.0, 0.0, 1e-10, False)
    with pytest.raises(TypeError, match="leading arguments must be arrays"):
        K.adagrad_step(1.0, np.ones(4))


def _fresh(code: str, threads: int) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    env["NUMBA_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, check=True).stdout


def test_one_and_two_threads_give_the_same_bits():
    """In one interpreter with two Numba threads: each rule's step on a parameter above the
    threshold, at numba.set_num_threads(1) and (2), gives the same bits, and at 2 threads the
    chunked driver ran."""
    code = """
import numba, numpy as np
from suite import optim
from suite.optim import numba_kernels as K
n = K.PARALLEL_MIN_SIZE + 5
out = []
for name, hyper in [("sgd", {"momentum": 0.9, "nesterov": True}), ("adagrad", {}),
                    ("rmsprop", {"centered": True, "momentum": 0.5}),
                    ("adam", {"amsgrad": True}), ("adamw", {"weight_decay": 0.1})]:
    res = []
    for t in (1, 2):
        numba.set_num_threads(t)
        rng = np.random.default_rng(0)
        p = [rng.standard_normal(n).astype(np.float32)]
        rule = optim.get(name, backend="numba", **hyper)
        st = rule.init(p)
        for _ in range(3):
            rule.step(p, [rng.standard_normal(n).astype(np.float32)], st)
        res.append(p[0])
    step = getattr(K, name.replace("adamw", "adam") + "_step")
    out.append(f"{name}:{np.array_equal(res[0], res[1])}:{bool(step.chunked.signatures)}")
print(" ".join(out))
"""
    got = _fresh(code, 2).split()
    assert got == [f"{n}:True:True" for n in ("sgd", "adagrad", "rmsprop", "adam", "adamw")]


def test_temporaries_see_reused_heap_blocks():
    """A step making one temporary of the parameter's size reads 1, also where glibc serves
    that block from memory freed earlier (the case that read 0 at 4.2M float32 elements)."""
    code = """
import numpy as np
from suite.bench import peak_extra_bytes
n = 4_194_304
a, b = np.ones(n, np.float32), np.ones(n, np.float32)
for _ in range(3):  # a freed mmapped block raises glibc's mmap threshold; then heap blocks
    t = np.empty(n, np.float32); t[:] = 1; del t
print(peak_extra_bytes(lambda: np.add(a, b)) / (4 * n),
      peak_extra_bytes(lambda: np.add(a, b, out=a)) / (4 * n))
"""
    one, zero = map(float, _fresh(code, 1).split())
    assert one == pytest.approx(1.0, abs=0.02)
    assert zero == pytest.approx(0.0, abs=0.02)


def test_ceiling_moves_the_steps_bytes():
    """The ceiling kernel for an optimizer updates the parameter and its state arrays in place
    (1 to 4 arrays) from one read-only array: checked against NumPy, and its count matches
    bytes_per_element."""
    g = np.full(100, 2.0, np.float32)
    arrays = [np.ones(100, np.float32) for _ in range(3)]
    bench._CEILINGS[3](g, *arrays, np.float32(0.5))
    for a in arrays:
        np.testing.assert_array_equal(a, np.full(100, 2.0, np.float32))
    # Adam: p, g, exp_avg, exp_avg_sq read; p and the two states written -> 7 arrays = 3 rw + g
    assert bench.bytes_per_element("adam", {}, 4) == (1 + 2 * 3) * 4
    with pytest.raises(ValueError, match="n_rw must be 1 to 4"):
        bench.ceiling_kernel(5, 10)


def test_roofline_records_threads_config_and_spread():
    frame = bench.roofline(size=1 << 15, threads=[1], optimizers=["sgd"], repeats=2)
    numba_row = frame[frame.implementation == "numba"].iloc[0]
    assert numba_row["config"] == "lr=0.001, momentum=0.9"
    assert numba_row["threads"] == 1
    assert numba_row["numba_threads"] == 1
    assert numba_row["temporaries"] == pytest.approx(0.0, abs=0.05)
    numpy_row = frame[frame.implementation == "numpy"].iloc[0]
    assert numpy_row["temporaries"] > 0.9  # NumPy's SGD makes full-size temporaries
    assert (frame["arrays"] == "own").all()
    shared = bench.roofline(size=1 << 12, threads=[1], optimizers=["sgd"], repeats=1,
                            shared=True)
    assert (shared["arrays"] == "shared").all()
    assert set(shared.implementation) == set(frame.implementation)
    for col in ("spread", "ceiling_spread", "fraction_of_ceiling", "fraction_spread",
                "ceiling_GB_per_s"):
        assert np.isfinite(frame[col]).all(), col
    import numba

    too_many = numba.config.NUMBA_NUM_THREADS + 1
    with pytest.raises(ValueError, match=f"threads={too_many} asked for.*NUMBA_NUM_THREADS"):
        bench.roofline(size=1 << 10, threads=[1, too_many], optimizers=["sgd"])


def test_compute_bound_reports_per_element_times():
    frame = bench.compute_bound(["adagrad"], threads=1, small=1 << 10, large=1 << 14,
                                repeats=2)
    row = frame.iloc[0]
    assert row["threads"] == 1
    assert row["bound"] in ("compute", "memory", "inconclusive")
    if row["ns_per_element_in_cache"] > 1.5 * row["ns_per_element_from_memory"]:
        assert row["bound"] == "inconclusive"
    else:
        assert row["bound"] == ("compute" if row["in_cache_over_floor"] >= 0.9 else "memory")
    assert 0 < row["fraction_of_ceiling"] < 10
    assert K.CHUNKS is None  # restored


def test_paired_ratio_of_twice_the_work_is_two():
    """The ratio of adjacent timings: summing an array twice over takes twice as long as
    once (within a generous margin for a shared machine; the thread's CPU clock leaves out
    waiting for a core); an inverted ratio would read 0.5."""
    a = np.ones(1 << 20)
    best, spread = bench.paired_times({"once": a.sum, "twice": lambda: (a.sum(), a.sum())},
                                      repeats=9, min_time=0.005, reference="once", clock="cpu")
    assert 1.4 < best["twice/once"] < 2.8, best
    assert spread["twice/once"] >= 0
    with pytest.raises(ValueError, match="reference 'x' is not one of"):
        bench.paired_times({"once": a.sum}, reference="x")
    with pytest.raises(ValueError, match="clock must be one of"):
        bench.paired_times({"once": a.sum}, clock="sundial")


def test_own_ceiling_streams_the_given_arrays_and_leaves_them_as_they_are():
    """The ceiling runs over an implementation's own arrays (tensors viewed, not copied): a
    finite gradient leaves every value bit for bit; a NaN in the gradient reaches every array
    at that index only (so each array is read and written, and nothing else is)."""
    import torch

    rng = np.random.default_rng(3)
    g = rng.standard_normal(64).astype(np.float32)
    p = torch.from_numpy(rng.standard_normal(64).astype(np.float32))
    m, v = (rng.standard_normal(64).astype(np.float32) for _ in range(2))
    before = [p.clone().numpy(), m.copy(), v.copy()]
    run = bench.own_ceiling(g, [p, m, v])
    run()
    for a, b in zip([p.numpy(), m, v], before, strict=True):
        np.testing.assert_array_equal(a, b)
    g[5] = np.nan
    run()
    for a in (p.numpy(), m, v):
        assert np.isnan(a[5])
        assert np.isfinite(np.delete(a, 5)).all()
    assert bench.own_ceiling(g, [p, m[:10]]) is None  # sizes differ
    assert bench.own_ceiling(g, [m.astype(np.float64)]) is None  # dtypes differ
    assert bench.own_ceiling(g, [m] * 5) is None  # more than four arrays


def test_paired_times_pairs_each_key_with_its_own_reference():
    """With a mapping, each key's ratio is against its own reference: summing an array twice
    is twice its own reference (one sum of the same array) for a long and a 8x shorter array;
    swapped references would read 16 and 0.25."""
    a = np.ones(1 << 20)
    b = np.ones(1 << 17)
    best, _ = bench.paired_times(
        {"ref_a": a.sum, "ref_b": b.sum, "twice_a": lambda: (a.sum(), a.sum()),
         "twice_b": lambda: (b.sum(), b.sum())},
        repeats=9, min_time=0.005, reference={"twice_a": "ref_a", "twice_b": "ref_b"},
        clock="cpu")
    assert 1.4 < best["twice_a/ref_a"] < 2.8, best
    assert 1.4 < best["twice_b/ref_b"] < 2.8, best
    with pytest.raises(ValueError, match="reference 'nope' is not one of"):
        bench.paired_times({"a": a.sum}, reference={"a": "nope"})


def test_roofline_pairs_each_implementation_with_a_ceiling_on_its_own_arrays():
    frame = bench.roofline(size=1 << 16, threads=[1], optimizers=["adam"], repeats=3)
    # every implementation has its own ceiling (a column that varies by implementation) ...
    assert frame["ceiling_GB_per_s"].notna().all()
    assert frame["ceiling_GB_per_s"].nunique() > 1
    # ... and the per-ceiling speedup of torch.optim's best (by fraction) is exactly 1
    torch_rows = frame[frame.implementation.str.startswith("torch.optim")]
    best = torch_rows.loc[torch_rows["fraction_of_ceiling"].idxmax()]
    assert best["speedup_vs_best_torch_per_ceiling"] == pytest.approx(1.0)
    numba = frame[frame.implementation == "numba"].iloc[0]
    assert numba["speedup_vs_best_torch_per_ceiling"] == pytest.approx(
        numba["fraction_of_ceiling"] / best["fraction_of_ceiling"])


def test_thread_sweep_table_keeps_each_implementations_own_ceiling():
    """Hand-made roofline rows: the table shows ms (seconds x 1000), GB/s and, per
    implementation, the ceiling measured on its own arrays (not one ceiling for all)."""
    from suite.report import figures as F

    roof = pd.DataFrame({
        "optimizer": ["adam"] * 4, "threads": [1, 1, 2, 2],
        "implementation": ["numba", "torch.optim-fused"] * 2,
        "seconds": [0.004, 0.008, 0.002, 0.005], "GB_per_s": [50.0, 25.0, 100.0, 40.0],
        "ceiling_GB_per_s": [51.0, 30.0, 101.0, 45.0]})
    t = F.thread_sweep_table(roof).set_index("threads")
    assert t.loc[1, "numba ms"] == pytest.approx(4.0)
    assert t.loc[2, "torch.optim-fused GB/s"] == 40.0
    assert t.loc[1, "numba ceiling GB/s"] == 51.0
    assert t.loc[2, "torch.optim-fused ceiling GB/s"] == 45.0


def test_shared_steps_update_one_set_of_arrays_by_the_rule():
    """bench._steps(shared=True): every implementation steps the Numba rule's parameter,
    gradient and momentum buffer. Each implementation's step, checked by hand against SGD with
    momentum (buf <- 0.9 buf + g; p <- p - lr buf, lr = 1e-3) from the arrays as they were
    before it, moves exactly those arrays; with shared=False the Numba arrays stay put."""
    n = 1 << 10
    steps = bench._steps("sgd", n, "float32", shared=True)
    _rule, (p,), (g,), st = steps["numba"][0].__defaults__
    buf = st[0]["momentum_buffer"]
    assert set(steps) >= {"numba", "numpy", "torch-backend", "torch.optim-forloop",
                          "torch.optim-foreach", "torch.optim-fused"}
    for impl, (fn, _ceiling) in steps.items():
        p_before, buf_before = p.astype(np.float64), buf.astype(np.float64)
        fn()
        want_buf = 0.9 * buf_before + g
        np.testing.assert_allclose(buf, want_buf, rtol=1e-6, atol=1e-9, err_msg=impl)
        np.testing.assert_allclose(p, p_before - 1e-3 * want_buf, rtol=1e-6, atol=1e-9,
                                   err_msg=impl)
    own = bench._steps("sgd", n, "float32")
    _rule, (p_own,), _g, _st = own["numba"][0].__defaults__
    before = p_own.copy()
    own["torch.optim-fused"][0]()
    np.testing.assert_array_equal(p_own, before)


@pytest.mark.parametrize("name", list(bench.BENCH_HYPER))
def test_shared_steps_leave_no_implementation_on_arrays_of_its_own(name):
    """For every benchmarked rule: after each implementation's step (on a fresh gradient,
    written into the shared one) the Numba parameter and every full-size state array have
    moved (they are what the step wrote), and each implementation's ceiling streams those same
    arrays (one memory placement for all)."""
    n = 1 << 10
    rng = np.random.default_rng(5)
    steps = bench._steps(name, n, "float32", shared=True)
    _rule, (p,), (g,), st = steps["numba"][0].__defaults__
    arrays = [p, *bench._full_size(st[0], n)]
    assert len(arrays) >= 2
    for impl, (fn, ceiling) in steps.items():
        before = [a.copy() for a in arrays]
        g[:] = rng.standard_normal(n) * 1e-3
        fn()
        moved = [not np.array_equal(a, b) for a, b in zip(arrays, before, strict=True)]
        assert all(moved), (impl, moved)
        cells = ceiling.__closure__ if ceiling is not None else ()
        streamed = [c.cell_contents for c in cells if isinstance(c.cell_contents, list)]
        if streamed:
            assert all(any(np.shares_memory(s, a) for a in arrays) for s in streamed[0]), impl

"""Users' optimizers in the roofline and in the pytest-benchmark fixture."""

import json
import sys
from pathlib import Path

import torch

from suite import bench

sys.path.insert(0, str(Path(__file__).parent))
import user_optim

pytest_plugins = ["pytester"]


def test_bytes_of_a_users_step_are_counted_from_its_state():
    size = 1000
    # torch.optim.Adam as a user class: exp_avg, exp_avg_sq (+ a scalar step tensor)
    _, info = bench.subject_step(torch.optim.Adam, size, "float32")
    ref = bench.bytes_per_element("adam", {"lr": 1e-3}, 4) * size   # from the spec
    assert ref <= info["bytes"] <= ref + 2 * 8
    _, info = bench.subject_step(user_optim.ClipMomentum, size, "float64")
    assert info["state_bytes_per_param_byte"] == 1.0
    assert info["bytes"] == (3 + 2) * 8 * size


def test_roofline_has_a_row_for_a_users_optimizer():
    from suite.subjects import resolve

    frame = bench.roofline(size=1 << 14, optimizers=["sgd"], repeats=1,
                           subjects=[resolve(user_optim.ClipMomentum, reference="sgd")])
    row = frame[frame.optimizer == "ClipMomentum"].iloc[0]
    assert row["implementation"].startswith("user:")
    assert row["state_bytes_per_param_byte"] == 1.0
    # timed in the same rounds as torch.optim's SGD: a finite ratio; none without a reference
    assert 0 < row["speedup_vs_best_torch"] < float("inf")
    alone = bench.roofline(size=1 << 12, optimizers=[], repeats=1,
                           subjects=[resolve(user_optim.ClipMomentum)])
    assert alone["speedup_vs_best_torch"].isna().all()
    sgd = frame[(frame.optimizer == "sgd") & (frame.implementation == "numba")].iloc[0]
    assert sgd["state_bytes_per_param_byte"] == 1.0   # momentum_buffer
    assert row["temporaries"] >= 0


def test_fixture_puts_yours_and_torch_in_one_group(pytester):
    pytester.makepyfile(user_optim=Path(user_optim.__file__).read_text())
    pytester.makepyfile(test_speed="""
        import user_optim

        def test_step(optimizer_benchmark):
            optimizer_benchmark(user_optim.ClipMomentum, reference="sgd", size=4096,
                                momentum=0.9)
        """)
    out = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--benchmark-only",
                                       "--benchmark-min-rounds=3", "--benchmark-max-time=0.01",
                                       "--benchmark-json=bench.json", "-q")
    out.assert_outcomes(passed=2)
    data = json.loads((pytester.path / "bench.json").read_text())
    rows = {b["extra_info"]["side"]: b for b in data["benchmarks"]}
    assert set(rows) == {"yours", "torch.optim"}
    assert rows["yours"]["group"] == rows["torch.optim"]["group"] == \
        "optimizer step: sgd, 4096 x float32"
    assert rows["torch.optim"]["extra_info"]["implementation"].startswith("torch.optim-")
    assert rows["yours"]["extra_info"]["bytes"] == rows["torch.optim"]["extra_info"]["bytes"]

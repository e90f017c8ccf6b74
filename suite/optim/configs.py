"""The table of optimizer configurations that drives cross-validation, tests and benchmarks.

In the spirit of PyTorch's ``OptimizerInfo``: every configuration PyTorch's own test-suite uses
for these optimizers (``optim_inputs_func_*`` in ``common_optimizers.py``, source ``"torch"``),
plus the full product of each optimizer's options at two (a few: three or four) values each
(source ``"grid"``), which covers the combinations torch's list does not (nesterov + maximize, centered + momentum +
maximize, amsgrad + maximize, lr_decay + initial_accumulator_value, beta1 < 0.5 where lerp takes
its other branch, large eps, NAdam's decoupled decay with maximize and a frozen momentum schedule,
RAdam never rectified (beta2 = 0.6: rho_inf = 4) and switching at step 6, Adadelta with rho 0
and 1, Rprop's etas near 1 and step sizes that clamp from the start, ASGD's averaging starting
at t0 = 0 or 50 inside the 200 steps, Adafactor with beta2_decay 0, an explicit epsilon1 and no
update clipping, ...). The grids of the last seven rules leave out options torch's list already
varies (maximize, lr) where the product would otherwise pass a hundred configurations. Duplicates are dropped; the first occurrence keeps its source.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from suite.optim.spec import OPTIMIZERS


@dataclass(frozen=True)
class Config:
    """One configuration: an optimizer and hyperparameters (defaults filled in by the spec)."""

    optimizer: str
    items: tuple[tuple[str, Any], ...]
    source: str = "grid"
    tensor_lr: bool = False  # torch side receives lr as a 0-dim tensor

    @property
    def hyper(self) -> dict[str, Any]:
        return dict(self.items)

    @property
    def id(self) -> str:
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in self.items)
        return f"{self.optimizer}({inner}{',lr=tensor' if self.tensor_lr else ''})"


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ",".join(_fmt(x) for x in v) + ")"
    if isinstance(v, bool):
        return "T" if v else "F"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _cfg(opt: str, source: str, tensor_lr: bool = False, **hyper: Any) -> Config:
    items = tuple(sorted(hyper.items()))
    return Config(opt, items, source, tensor_lr)


# PyTorch's own list (torch/testing/_internal/common_optimizers.py, CPU configs).
_TORCH: list[Config] = [
    _cfg("sgd", "torch"), _cfg("sgd", "torch", lr=1e-2),
    _cfg("sgd", "torch", tensor_lr=True, lr=1e-3),
    _cfg("sgd", "torch", weight_decay=0.5), _cfg("sgd", "torch", momentum=0.9),
    _cfg("sgd", "torch", weight_decay=0.1, maximize=True),
    _cfg("sgd", "torch", momentum=0.9, dampening=0.5),
    _cfg("sgd", "torch", momentum=0.9, weight_decay=0.1),
    _cfg("sgd", "torch", momentum=0.9, nesterov=True, weight_decay=0.1),
    _cfg("adagrad", "torch"), _cfg("adagrad", "torch", weight_decay=0.1),
    _cfg("adagrad", "torch", weight_decay=0.1, maximize=True), _cfg("adagrad", "torch", lr=0.1),
    _cfg("adagrad", "torch", tensor_lr=True, lr=1e-3),
    _cfg("adagrad", "torch", initial_accumulator_value=0.1, weight_decay=0.1),
    _cfg("adagrad", "torch", lr=0.1, lr_decay=0.5, weight_decay=0.1),
    _cfg("rmsprop", "torch"), _cfg("rmsprop", "torch", lr=1e-3),
    _cfg("rmsprop", "torch", weight_decay=0.1), _cfg("rmsprop", "torch", maximize=True),
    _cfg("rmsprop", "torch", weight_decay=0.1, centered=True),
    _cfg("rmsprop", "torch", maximize=True, weight_decay=0.1),
    _cfg("rmsprop", "torch", weight_decay=0.1, centered=True, momentum=0.1),
    _cfg("rmsprop", "torch", weight_decay=0.1, centered=True, momentum=0.1, maximize=True),
    *[c for opt in ("adam", "adamw") for c in (
        _cfg(opt, "torch"), _cfg(opt, "torch", lr=0.01), _cfg(opt, "torch", weight_decay=0.1),
        _cfg(opt, "torch", weight_decay=0.1, maximize=True),
        _cfg(opt, "torch", weight_decay=0.1, amsgrad=True))],
    _cfg("nadam", "torch"), _cfg("nadam", "torch", lr=1e-3),
    _cfg("nadam", "torch", momentum_decay=6e-3), _cfg("nadam", "torch", weight_decay=0.1),
    _cfg("nadam", "torch", weight_decay=0.1, momentum_decay=6e-3),
    _cfg("nadam", "torch", weight_decay=0.1, momentum_decay=6e-3,
         decoupled_weight_decay=True),
    _cfg("nadam", "torch", weight_decay=0.1, maximize=True),
    _cfg("radam", "torch"), _cfg("radam", "torch", lr=2e-3), _cfg("radam", "torch", eps=1e-6),
    _cfg("radam", "torch", weight_decay=0.1),
    _cfg("radam", "torch", weight_decay=0.1, decoupled_weight_decay=True),
    _cfg("radam", "torch", weight_decay=0.1, maximize=True),
    _cfg("adamax", "torch"), _cfg("adamax", "torch", lr=0.1),
    _cfg("adamax", "torch", weight_decay=0.1), _cfg("adamax", "torch", maximize=True),
    _cfg("adamax", "torch", weight_decay=0.1, maximize=True),
    _cfg("adadelta", "torch"), _cfg("adadelta", "torch", lr=0.01),
    _cfg("adadelta", "torch", weight_decay=0.1), _cfg("adadelta", "torch", maximize=True),
    _cfg("adadelta", "torch", weight_decay=0.1, maximize=True),
    _cfg("adadelta", "torch", rho=0.95, weight_decay=0.9),
    _cfg("rprop", "torch"), _cfg("rprop", "torch", lr=2e-4),
    _cfg("rprop", "torch", etas=(0.5, 1.5)), _cfg("rprop", "torch", step_sizes=(2e-6, 100.0)),
    _cfg("rprop", "torch", maximize=True),
    _cfg("asgd", "torch"), _cfg("asgd", "torch", lambd=0.1), _cfg("asgd", "torch", lr=0.02),
    _cfg("asgd", "torch", t0=100.0), _cfg("asgd", "torch", maximize=True),
    _cfg("asgd", "torch", weight_decay=0.1),
    _cfg("asgd", "torch", weight_decay=0.1, maximize=True),
    _cfg("adafactor", "torch"), _cfg("adafactor", "torch", weight_decay=0.1, lr=0.01),
    _cfg("adafactor", "torch", weight_decay=0.1, maximize=True),
    _cfg("adafactor", "torch", beta2_decay=-1.0), _cfg("adafactor", "torch", d=1.5),
]

# Two values per option; the product is taken and invalid combinations are skipped.
_GRID: dict[str, dict[str, tuple[Any, ...]]] = {
    "sgd": {"lr": (1e-2, 0.3), "momentum": (0.0, 0.9), "dampening": (0.0, 0.5),
            "nesterov": (False, True), "weight_decay": (0.0, 0.1), "maximize": (False, True)},
    "adagrad": {"lr": (1e-2, 0.5), "lr_decay": (0.0, 0.5), "weight_decay": (0.0, 0.1),
                "initial_accumulator_value": (0.0, 0.1), "eps": (1e-10, 1e-2),
                "maximize": (False, True)},
    "rmsprop": {"lr": (1e-3, 1e-2), "alpha": (0.99, 0.3), "momentum": (0.0, 0.5),
                "centered": (False, True), "weight_decay": (0.0, 0.1),
                "maximize": (False, True)},
    "adam": {"lr": (1e-3, 0.1), "betas": ((0.9, 0.999), (0.3, 0.6)), "eps": (1e-8, 1e-3),
             "weight_decay": (0.0, 0.1), "amsgrad": (False, True), "maximize": (False, True)},
}
_GRID["adamw"] = _GRID["adam"]
_GRID.update({
    # beta1 = 0.3 takes lerp's other branch; momentum_decay 0 freezes the schedule at beta1/2
    "nadam": {"lr": (0.05,), "betas": ((0.9, 0.999), (0.3, 0.6)),
              "momentum_decay": (4e-3, 0.0), "weight_decay": (0.0, 0.1),
              "decoupled_weight_decay": (False, True), "maximize": (False, True)},
    # beta2 = 0.6 gives rho_inf = 4: never rectified; 0.999 switches at step 6
    "radam": {"lr": (1e-3, 0.05), "betas": ((0.9, 0.999), (0.3, 0.6)),
              "eps": (1e-3,), "weight_decay": (0.0, 0.1),
              "decoupled_weight_decay": (False, True), "maximize": (False, True)},
    "adamax": {"lr": (2e-3, 0.1), "betas": ((0.9, 0.999), (0.3, 0.6)), "eps": (1e-8, 1e-2),
               "weight_decay": (0.0, 0.1), "maximize": (False, True)},
    "adadelta": {"lr": (1.0,), "rho": (0.9, 0.3, 1.0, 0.0), "eps": (1e-6, 1e-2),
                 "weight_decay": (0.0, 0.1), "maximize": (False, True)},
    # etas near 1 and far from it; step sizes that clamp from the first steps on both sides
    "rprop": {"lr": (1e-2, 0.5, 1e-7), "etas": ((0.5, 1.2), (0.1, 3.0), (0.99, 1.01)),
              "step_sizes": ((1e-6, 50.0), (1e-3, 0.05), (0.0, 1e3))},
    # t0 = 50 and 0 start the averaging inside 200 steps; lambd 0.5 makes eta decay fast
    "asgd": {"lr": (0.05,), "lambd": (1e-4, 0.5), "alpha": (0.75, 1.5),
             "t0": (1e6, 50.0, 0.0), "weight_decay": (0.0, 0.1)},
    "adafactor": {"lr": (1e-2, 0.3), "beta2_decay": (-0.8, 0.0),
                  "eps": ((None, 1e-3), (1e-3, 0.1)), "d": (1.0, 1e3),
                  "weight_decay": (0.0, 0.1)},
})


def _grid(opt: str) -> Iterable[Config]:
    options = _GRID[opt]
    spec = OPTIMIZERS[opt]
    for values in itertools.product(*options.values()):
        hyper = dict(zip(options, values, strict=True))
        try:
            spec.resolve(**hyper)
        except ValueError:
            continue  # e.g. nesterov with dampening
        yield _cfg(opt, "grid", **hyper)


def _canonical(c: Config) -> tuple[str, tuple[tuple[str, Any], ...], bool]:
    full = OPTIMIZERS[c.optimizer].resolve(**c.hyper)
    return c.optimizer, tuple(sorted(full.items())), c.tensor_lr


def build_table() -> list[Config]:
    seen: set[Any] = set()
    table: list[Config] = []
    for c in [*_TORCH, *(c for opt in OPTIMIZERS for c in _grid(opt))]:
        key = _canonical(c)
        if key not in seen:
            seen.add(key)
            table.append(c)
    return table


CONFIGS: list[Config] = build_table()


def configs_for(optimizer: str | None = None, source: str | None = None) -> list[Config]:
    return [c for c in CONFIGS if (optimizer is None or c.optimizer == optimizer)
            and (source is None or c.source == source)]


def count_by_optimizer() -> Mapping[str, int]:
    out: dict[str, int] = {}
    for c in CONFIGS:
        out[c.optimizer] = out.get(c.optimizer, 0) + 1
    return out

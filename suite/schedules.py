"""Learning-rate schedules that match torch.optim.lr_scheduler step for step.

``lr_at(schedule, lr0, t)`` is the learning rate used by the (t+1)-th ``optimizer.step()`` when
``scheduler.step()`` is called after each optimizer step, as torch recommends:

- ``constant``                          lr0
- ``step(step_size, gamma)``            lr0 · gamma^⌊t / step_size⌋          (StepLR)
- ``exponential(gamma)``                lr0 · gamma^t                         (ExponentialLR)
- ``cosine(T_max, eta_min)``            eta_min + (lr0 - eta_min)(1 + cos(π t / T_max)) / 2
                                                                              (CosineAnnealingLR)

torch computes StepLR, ExponentialLR and CosineAnnealingLR recursively (each lr from the previous
one); the closed forms here agree with them to round-off (tested to 1e-12 relative over 2000
steps), which is what "step for step" means for floating point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

KINDS = ("constant", "step", "exponential", "cosine")
CODES = {k: i for i, k in enumerate(KINDS)}


@dataclass(frozen=True)
class Schedule:
    kind: str = "constant"
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        need = {"constant": set(), "step": {"step_size", "gamma"}, "exponential": {"gamma"},
                "cosine": {"T_max", "eta_min"}}
        if self.kind not in need:
            raise ValueError(f"unknown schedule {self.kind!r}; expected one of {', '.join(KINDS)}")
        extra = set(self.params) - need[self.kind]
        missing = need[self.kind] - set(self.params) - ({"eta_min"} if self.kind == "cosine"
                                                        else set())
        if extra or missing:
            raise ValueError(f"schedule {self.kind!r} takes {sorted(need[self.kind])}; got "
                             f"{sorted(self.params)}")
        if self.kind == "step" and not self.params["step_size"] >= 1:
            raise ValueError(f"step_size={self.params['step_size']}; expected >= 1")
        if self.kind == "cosine" and not self.params["T_max"] > 0:
            raise ValueError(f"T_max={self.params['T_max']}; expected > 0")
        if "gamma" in self.params and not self.params["gamma"] > 0:
            raise ValueError(f"gamma={self.params['gamma']}; expected > 0")

    def lr_at(self, lr0: float, t: int) -> float:
        return lr_at(self, lr0, t)

    def as_array(self) -> tuple[int, float, float]:
        """(code, a, b) for compiled kernels."""
        p = self.params
        if self.kind == "step":
            return CODES["step"], float(p["step_size"]), float(p["gamma"])
        if self.kind == "exponential":
            return CODES["exponential"], float(p["gamma"]), 0.0
        if self.kind == "cosine":
            return CODES["cosine"], float(p["T_max"]), float(p.get("eta_min", 0.0))
        return 0, 0.0, 0.0

    def torch_scheduler(self, opt: Any) -> Any:
        from torch.optim import lr_scheduler as S

        p = self.params
        if self.kind == "step":
            return S.StepLR(opt, step_size=int(p["step_size"]), gamma=p["gamma"])
        if self.kind == "exponential":
            return S.ExponentialLR(opt, gamma=p["gamma"])
        if self.kind == "cosine":
            return S.CosineAnnealingLR(opt, T_max=int(p["T_max"]), eta_min=p.get("eta_min", 0.0))
        return S.ConstantLR(opt, factor=1.0, total_iters=0)

    @property
    def label(self) -> str:
        if not self.params:
            return self.kind
        return f"{self.kind}(" + ",".join(f"{k}={v:g}" for k, v in self.params.items()) + ")"


def lr_at(schedule: Schedule, lr0: float, t: int) -> float:
    code, a, b = schedule.as_array()
    return lr_from_code(code, a, b, lr0, t)


def lr_from_code(code: int, a: float, b: float, lr0: float, t: int) -> float:
    if code == 1:
        return lr0 * b ** (t // int(a))
    if code == 2:
        return lr0 * a**t
    if code == 3:
        return b + (lr0 - b) * (1 + math.cos(math.pi * t / a)) / 2
    return lr0


def parse(text: str | None) -> Schedule:
    """``'cosine:T_max=2000,eta_min=0'`` -> Schedule (CLI syntax)."""
    if not text:
        return Schedule()
    kind, _, rest = text.partition(":")
    params: dict[str, float] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"schedule parameter {item!r} is not key=number") from None
    return Schedule(kind.strip(), params)

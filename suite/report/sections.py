"""Report sections: each takes the loaded frames and returns an HTML fragment ('' if absent)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from suite.report.html import _table

Frames = dict[str, pd.DataFrame]


def crossval_section(frames: Frames) -> str:
    if "crossval_summary" not in frames:
        return ""
    summ = frames["crossval_summary"]
    full = frames.get("crossval")
    text = ""
    if full is not None:
        n_fail = int((~full["passed"].astype(bool)).sum())
        text = (f"<p>{full['config'].nunique()} configurations, {len(full)} comparisons of "
                f"parameters and every state entry at every step; "
                f"<span class='{'bad' if n_fail else ''}'>{n_fail} disagree</span>.</p>")
    return text + _table(summ, 200)


SECTIONS: list[tuple[str, Callable[[Frames], str]]] = [
    ("Cross-validation against torch.optim", crossval_section),
]

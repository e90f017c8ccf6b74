"""One self-contained HTML page from any set of run directories (figures embedded as PNG)."""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from suite.report.load import ResultFileError, _atomic_write, read_frame, read_json

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
.bad{color:#b00020;font-weight:bold} .warn{background:#fff4e5;padding:.5em;border-left:4px solid #f90}
img{max-width:100%} h2{border-bottom:2px solid #ddd;padding-bottom:.2em}
"""


def _table(df: pd.DataFrame, max_rows: int = 60) -> str:
    shown = df.head(max_rows)
    out = shown.to_html(index=False, float_format=lambda x: f"{x:.3g}", border=0,
                        na_rep="-", escape=True)
    if len(df) > max_rows:
        out += f"<p>({len(df) - max_rows} more rows in the run's files)</p>"
    return out


def load_runs(run_dirs: Sequence[Path]) -> tuple[dict[str, pd.DataFrame], list[dict], list[str]]:
    """Frames (concatenated over runs, with a ``run`` column), provenances and problems found."""
    frames: dict[str, list[pd.DataFrame]] = {}
    provs: list[dict] = []
    problems: list[str] = []
    for d in run_dirs:
        d = Path(d)
        try:
            prov = read_json(d / "provenance.json")
            if prov.get("schema_version") != 1:
                problems.append(f"{d}: schema version {prov.get('schema_version')!r} is not "
                                "supported (expected 1); its frames are shown as read")
            provs.append({"run": d.name, **prov})
        except ResultFileError as exc:
            problems.append(str(exc))
        for f in sorted(d.glob("*.parquet")):
            try:
                df = read_frame(f)
            except ResultFileError as exc:
                problems.append(str(exc))
                continue
            df.insert(0, "run", d.name)
            frames.setdefault(f.stem, []).append(df)
    return ({k: pd.concat(v, ignore_index=True) for k, v in frames.items()}, provs, problems)


def build_report(run_dirs: Sequence[Path], out: Path, overwrite: bool = False,
                 extra: dict[str, pd.DataFrame] | None = None) -> Path:
    from suite.report import sections

    frames, provs, problems = load_runs(run_dirs)
    frames.update(extra or {})
    body = [f"<h1>gradsuite report</h1><p>Runs: {', '.join(_html.escape(Path(d).name) for d in run_dirs)}</p>"]
    body.extend(f'<p class="warn">{_html.escape(p)}</p>' for p in problems)
    for title, builder in sections.SECTIONS:
        try:
            content = builder(frames)
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
            content = f'<p class="warn">section failed: {_html.escape(repr(exc))}</p>'
        if content:
            body.append(f"<h2>{_html.escape(title)}</h2>{content}")
    if provs:
        body.append("<h2>Provenance</h2>" + _table(pd.json_normalize(provs)))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>gradsuite report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    return _atomic_write(Path(out), lambda t: t.write_text(page, encoding="utf-8"),
                         overwrite=overwrite)

"""HTML building blocks of the report: tables, folded blocks, figures (no file access)."""

from __future__ import annotations

import html as _html

import pandas as pd

#: tables longer than this are folded behind their one-line summary (``<details>``)
FOLD_ROWS = 15


def esc(text: object) -> str:
    return _html.escape(str(text))


def details(summary: str, content: str, open_: bool = False) -> str:
    """``content`` folded behind ``summary`` (HTML, one line); the reader unfolds it."""
    return (f"<details{' open' if open_ else ''}><summary>{summary}</summary>"
            f"{content}</details>")


def table(df: pd.DataFrame, max_rows: int = 60, summary: str | None = None,
          fold_rows: int = FOLD_ROWS) -> str:
    """``df`` as an HTML table (no index; 3 significant digits).

    A ``run`` column with one value is dropped (the page says which run it shows). Tables
    longer than ``fold_rows`` fold away behind ``summary`` (default: the row count); more
    than ``max_rows`` rows are cut, with the number left out said under the table.
    """
    if "run" in df.columns and df["run"].nunique() <= 1:
        df = df.drop(columns="run")
    shown = df.head(max_rows)
    out = shown.to_html(index=False, float_format=lambda x: f"{x:.3g}", border=0,
                        na_rep="-", escape=True)
    out = f'<div class="table">{out}</div>'
    if len(df) > max_rows:
        out += f"<p>({len(df) - max_rows} more rows in the run's files)</p>"
    if len(df) > fold_rows:
        label = summary or "The table"
        return details(f"{label} <span class='muted'>({len(df)} rows; click to show)</span>",
                       out)
    return out


def figure(data_uri: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="{data_uri}">{cap}</figure>'

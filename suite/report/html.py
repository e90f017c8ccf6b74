"""One self-contained HTML page from any set of run directories (figures embedded as PNG).

The page: a first screen that says what was run and each section's verdict (the verdicts are
also the table of contents), then one ``<section>`` per registered part
(:data:`suite.report.sections.SECTIONS`), then the provenance. Figures and tables show the
newest run that has the frame; the section "Changes between runs" compares the runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from suite.report.load import ResultFileError, _atomic_write, read_frame, read_json
from suite.report.tables import details, esc, table

# kept for code that imported the table helper from here
_table = table

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;
     color:#222;line-height:1.4}
table{border-collapse:collapse;font-size:13px;margin:.6em auto}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
div.table{overflow-x:auto;max-width:100%}
.bad,.fail{color:#b00020;font-weight:bold} .pass{color:#11751f;font-weight:bold}
.warn{background:#fff4e5;padding:.5em;border-left:4px solid #f90}
.muted{color:#777;font-weight:normal}
figure{margin:1.2em 0;text-align:center} figure img{max-width:100%;height:auto}
figcaption{font-size:13px;color:#555}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
section>p.summary{font-size:15px}
details{margin:.6em 0} summary{cursor:pointer;color:#1a4f8b}
table.verdicts{margin:.6em 0;font-size:14px;width:100%}
table.verdicts td{text-align:left}
table.runs{margin:.6em 0} table.runs td{text-align:left}
table.prov td{text-align:left;word-break:break-word;white-space:normal;max-width:60em}
"""


def load_runs(run_dirs: Sequence[Path]) -> tuple[dict[str, pd.DataFrame], list[dict], list[str]]:
    """Frames (concatenated over runs, with a ``run`` column), provenances and problems found.

    A run's ``provenance.json`` and any ``provenance-resumed-*.json`` are merged (the later
    attempts add their parts)."""
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
            for later in sorted(d.glob("provenance-resumed-*.json")):
                try:
                    more = read_json(later)
                except ResultFileError as exc:
                    problems.append(str(exc))
                    continue
                prov["parts"] = {**prov.get("parts", {}), **more.get("parts", {})}
                prov["finished"] = more.get("finished", prov.get("finished"))
                prov.setdefault("resumed", []).append(more.get("command"))
            provs.append({"run": d.name, **prov})
        except ResultFileError as exc:
            problems.append(str(exc))
        seen = set()
        for f in sorted(d.glob("*.parquet")) + sorted(d.glob("*.csv")):
            if f.stem in seen:  # a frame written in both formats is read once, from Parquet
                continue
            seen.add(f.stem)
            try:
                df = read_frame(f)
            except ResultFileError as exc:
                problems.append(str(exc))
                continue
            df.insert(0, "run", d.name)
            frames.setdefault(f.stem, []).append(df)
    return ({k: pd.concat(v, ignore_index=True) for k, v in frames.items()}, provs, problems)


def newest(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each frame restricted to the newest run that has it (frames without ``run`` as they are)."""
    out = {}
    for k, v in frames.items():
        if isinstance(v, pd.DataFrame) and "run" in v.columns and len(v):
            v = v[v["run"] == v["run"].iloc[-1]].reset_index(drop=True)
        out[k] = v
    return out


def _options(prov: dict[str, Any]) -> dict[str, Any]:
    opts = dict(prov.get("options") or {})
    opts.setdefault("size", prov.get("size"))
    return opts


def _first_screen(run_names: list[str], provs: list[dict]) -> str:
    by_run = {p["run"]: p for p in provs}
    rows = []
    for name in run_names:
        p = by_run.get(name, {})
        o = _options(p)
        parts = p.get("parts") or {}
        part_text = ", ".join(f"{k} ({v.get('seconds', 0):.0f} s)" if isinstance(v, dict)
                              else str(k) for k, v in parts.items()) or "-"
        rows.append(
            f"<tr><td><b>{esc(name)}</b></td><td>{esc(o.get('size') or '-')}</td>"
            f"<td>{esc(part_text)}</td>"
            f"<td>{esc(', '.join(o.get('optimizers') or []) or '-')}</td>"
            f"<td>{esc(str(p.get('started', '-'))[:19])}</td>"
            f"<td>{esc(str(p.get('git_commit', '-'))[:10])}</td>"
            f"<td>{esc(p.get('cpu', '-'))}, threads {esc(_threads(p))}</td></tr>")
    head = ("<tr><th>run</th><th>size</th><th>parts (time)</th><th>optimizers</th>"
            "<th>started (UTC)</th><th>commit</th><th>machine</th></tr>")
    what = ("What was run" if len(run_names) == 1 else
            f"What was run ({len(run_names)} runs: figures and tables show the newest run "
            "that has them; <a href='#changes'>Changes between runs</a> compares the first "
            "with the last)")
    return f"<h3>{what}</h3><div class='table'><table class='runs'>{head}{''.join(rows)}</table></div>"


def _threads(p: dict[str, Any]) -> str:
    t = p.get("threads")
    if isinstance(t, dict):
        return "/".join(f"{k.split('_')[0]} {v}" for k, v in t.items())
    return "-"


def _provenance(provs: list[dict]) -> str:
    flat = pd.json_normalize(provs).set_index("run").T
    flat.index.name = "field"
    rows = "".join(
        f"<tr><th>{esc(field)}</th>" + "".join(
            f"<td>{esc('-' if (v is None or (isinstance(v, float) and pd.isna(v))) else v)}</td>"
            for v in vals) + "</tr>"
        for field, vals in zip(flat.index, flat.to_numpy(), strict=True))
    head = "<tr><th>field</th>" + "".join(f"<th>{esc(c)}</th>" for c in flat.columns) + "</tr>"
    return details("Versions, commit, CPU, threads, command line, seeds, start and end time "
                   f"<span class='muted'>({len(flat)} fields)</span>",
                   f"<table class='prov'>{head}{rows}</table>", open_=True)


def build_report(run_dirs: Sequence[Path], out: Path, overwrite: bool = False,
                 extra: dict[str, pd.DataFrame] | None = None) -> Path:
    from suite.report import sections

    frames, provs, problems = load_runs(run_dirs)
    frames.update(extra or {})
    shown = newest(frames)
    run_names = [Path(d).name for d in run_dirs]
    built = []
    for sec in sections.registered():
        try:
            content = sections.as_content(sec.build(frames if sec.all_runs else shown))
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
            content = sections.Content(
                f'<p class="warn">section failed: {esc(repr(exc))}</p>',
                summary=f"section failed: {esc(type(exc).__name__)}", verdict="fail")
        if content.html:
            built.append((sec, content))
    verdicts = "".join(
        f"<tr><td><a href='#{sec.key}'>{esc(sec.title)}</a></td>"
        f"<td class='{c.verdict}'>{c.summary or '&nbsp;'}</td></tr>" for sec, c in built)
    if provs:
        verdicts += ("<tr><td><a href='#provenance'>Provenance</a></td><td>versions, commit, "
                     "CPU, threads, command line, seeds, times</td></tr>")
    body = ["<h1>gradsuite report</h1>", _first_screen(run_names, provs)]
    body.extend(f'<p class="warn">{esc(p)}</p>' for p in problems)
    body.append(f"<h3>Verdicts and contents</h3><table class='verdicts'>{verdicts}</table>")
    for sec, c in built:
        summary = f"<p class='summary {c.verdict}'>{c.summary}</p>" if c.summary else ""
        body.append(f"<section id='{sec.key}'><h2>{esc(sec.title)}</h2>{summary}{c.html}"
                    "</section>")
    if provs:
        body.append(f"<section id='provenance'><h2>Provenance</h2>{_provenance(provs)}"
                    "</section>")
    page = ("<!doctype html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>gradsuite report: {esc(', '.join(run_names))}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    return _atomic_write(Path(out), lambda t: t.write_text(page, encoding="utf-8"),
                         overwrite=overwrite)


def next_page(run_dir: Path, stem: str = "index") -> Path:
    """``run_dir/index.html``, or the first free ``index-2.html``, ``index-3.html``, ... (a
    page is never overwritten: a rebuilt or resumed run gets a new version)."""
    path = Path(run_dir) / f"{stem}.html"
    k = 2
    while path.exists():
        path = Path(run_dir) / f"{stem}-{k}.html"
        k += 1
    return path


def newest_run(root: Path) -> Path | None:
    """The newest run directory under ``root`` (by the UTC time in its name), or None."""
    runs = sorted((p for p in Path(root).glob("run-*") if p.is_dir()),
                  key=lambda p: (p.name.split("-")[1] if "-" in p.name else "", p.name))
    return runs[-1] if runs else None


def latest_page(run_dir: Path, stem: str = "index") -> Path | None:
    """The newest version of a run's page (``index.html``, ``index-2.html``, ...), or None."""
    pages = [p for p in Path(run_dir).glob(f"{stem}*.html")
             if p.stem == stem or p.stem.removeprefix(f"{stem}-").isdigit()]
    if not pages:
        return None
    return max(pages, key=lambda p: int(p.stem.removeprefix(f"{stem}-"))
               if p.stem != stem else 1)

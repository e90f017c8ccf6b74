"""Screenshots of a report page (or of asv's dashboard) in headless Chromium.

::

    python -m suite.report.screenshot reports/run-20260101T000000Z      # its newest page
    python -m suite.report.screenshot page.html --out shots/
    python -m suite.report.screenshot .asv/html --serve --offline      # asv needs HTTP

The whole page is rendered in one tall window; the blank space under it is cut off and the
result is written as ``<name>-full.png`` and as tiles of ``--tile`` pixels
(``<name>-01.png``, ...) that are easy to look through. Needs a Chromium
(``apt-get install chromium``); nothing is fetched from the network (``--serve`` serves the
directory on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The path of a Chromium-like browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) while inside the block."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def capture(url: str, out: Path, width: int = 1300, height: int = 20000,
            budget_ms: int = 8000, browser: str | None = None,
            console: Path | None = None, offline: bool = False) -> Path:
    """One screenshot of ``url`` in a ``width`` x ``height`` window, written to ``out``.

    ``budget_ms`` of virtual time lets scripts run and images load first. With ``console``,
    the page's console messages (Chromium's log) are written there. ``offline``: every host
    but 127.0.0.1 fails to resolve, as on a machine without internet."""
    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError("no Chromium found: apt-get install chromium")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gradsuite-chromium-") as profile:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-background-networking", "--disable-sync",
             "--disable-component-update", "--disable-extensions", "--mute-audio",
             "--enable-logging=stderr", "--v=0",
             *(["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"] if offline
               else []),
             f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url],
            capture_output=True, text=True, timeout=300, check=False)
    if console is not None:
        lines = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "console" in ln]
        console.write_text("\n".join(lines) + ("\n" if lines else ""))
    if not out.exists():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return out


def trim_and_tile(png: Path, tile: int = 1600) -> list[Path]:
    """Cut the uniform space under the page off ``png`` (in place) and write tiles of
    ``tile`` rows next to it; returns the tiles' paths."""
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    rgb = img[..., :3]
    rows = np.flatnonzero(np.abs(rgb - rgb[-1:, :, :]).max(axis=(1, 2)) > 1e-3)
    bottom = int(rows[-1]) + 20 if len(rows) else img.shape[0]
    img = img[: min(bottom, img.shape[0])]
    mpimg.imsave(png, img)
    paths = []
    for k, start in enumerate(range(0, img.shape[0], tile), 1):
        path = png.with_name(png.stem.removesuffix("-full") + f"-{k:02d}.png")
        mpimg.imsave(path, img[start: start + tile])
        paths.append(path)
    return paths


def _page_of(target: Path) -> Path:
    if target.is_dir():
        from suite.report.html import latest_page

        page = latest_page(target)
        if page is None:
            raise FileNotFoundError(f"{target}: no index*.html in this directory")
        return page
    return target


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suite.report.screenshot",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("target", help="an HTML file, a run directory (its newest page) or, with "
                    "--serve, a directory to serve (e.g. .asv/html)")
    ap.add_argument("--out", default="screenshots", help="directory for the PNGs "
                    "(default screenshots)")
    ap.add_argument("--name", help="file name stem (default: the page's name)")
    ap.add_argument("--serve", action="store_true",
                    help="serve the target directory over HTTP and open its index.html")
    ap.add_argument("--width", type=int, default=1300, help="window width (default 1300)")
    ap.add_argument("--height", type=int, default=20000,
                    help="window height, the longest page captured (default 20000)")
    ap.add_argument("--tile", type=int, default=1600, help="tile height (default 1600)")
    ap.add_argument("--offline", action="store_true",
                    help="no network: every host but 127.0.0.1 fails to resolve")
    args = ap.parse_args(argv)
    target = Path(args.target)
    out_dir = Path(args.out)
    try:
        if args.serve:
            name = args.name or target.resolve().name
            with serve(target) as url:
                png = capture(url + "index.html", out_dir / f"{name}-full.png", args.width,
                              args.height, console=out_dir / f"{name}-console.txt",
                              offline=args.offline)
        else:
            page = _page_of(target)
            name = args.name or f"{page.parent.name}-{page.stem}"
            png = capture(page.resolve().as_uri(), out_dir / f"{name}-full.png", args.width,
                          args.height, console=out_dir / f"{name}-console.txt",
                          offline=args.offline)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tiles = trim_and_tile(png, args.tile)
    print(f"{png} ({len(tiles)} tiles: {tiles[0].name} ... {tiles[-1].name})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

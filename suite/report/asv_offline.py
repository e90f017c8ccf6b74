"""Make asv's published dashboard work offline: vendor its JavaScript and CSS dependencies.

``asv publish`` writes pages that load jQuery, flot (and its plugins), stupidtable, blueimp-md5
and Bootstrap from CDNs; without internet the dashboard only says "One or more external
(JavaScript) dependencies of airspeed velocity failed to load". This script fetches those
files from the npm registry with ``npm pack`` (cached in ``--cache``, so the network is needed
once), copies them under ``HTML_DIR/vendor/`` and points the pages at the copies (dropping the
CDN integrity hashes, which do not hold for the npm builds)::

    python -m suite.report.asv_offline .asv/html           # `make asv` runs this after publishing

Exit 1 when a page still loads something from the network afterwards.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

#: CDN URL -> (npm package@version, file in the package, path under vendor/)
VENDOR: dict[str, tuple[str, str, str]] = {
    "https://code.jquery.com/jquery-3.3.1.min.js":
        ("jquery@3.3.1", "dist/jquery.min.js", "jquery/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js":
        ("flot@0.8.3", "jquery.flot.js", "flot/jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        ("flot@0.8.3", "jquery.flot.time.js", "flot/jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        ("flot@0.8.3", "jquery.flot.selection.js", "flot/jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        ("flot@0.8.3", "jquery.flot.categories.js", "flot/jquery.flot.categories.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js",
         "flot-orderbars/jquery.flot.orderBars.js"),
    # cdnjs's stupidtable 1.0.1 is not on npm; 1.1.3 is the same plugin ($.fn.stupidtable)
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        ("stupid-table-plugin@1.1.3", "stupidtable.min.js", "stupidtable/stupidtable.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js":
        ("blueimp-md5@2.19.0", "js/md5.min.js", "blueimp-md5/md5.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        ("bootstrap@3.1.1", "dist/js/bootstrap.min.js", "bootstrap/js/bootstrap.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        ("bootstrap@3.1.1", "dist/css/bootstrap.min.css", "bootstrap/css/bootstrap.min.css"),
}
#: further files a vendored file refers to (Bootstrap's CSS loads ../fonts/*)
EXTRA: dict[str, list[tuple[str, str]]] = {
    "bootstrap@3.1.1": [(f"dist/fonts/glyphicons-halflings-regular.{ext}",
                         f"bootstrap/fonts/glyphicons-halflings-regular.{ext}")
                        for ext in ("eot", "svg", "ttf", "woff")],
}
_TAG = re.compile(r"<(script|link)\b[^>]*?(?:src|href)=\"(https?://[^\"]+)\"[^>]*>")
_DROP = re.compile(r"\s+(integrity|crossorigin|referrerpolicy)=\"[^\"]*\"")


def _tarball(spec: str, cache: Path) -> Path:
    name, version = spec.rsplit("@", 1)
    path = cache / f"{name.replace('/', '-').lstrip('@')}-{version}.tgz"
    if not path.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"{spec} is not in {cache} and npm is not installed to fetch it")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "pack", spec, "--pack-destination", str(cache)], check=True,
                       capture_output=True, text=True, timeout=300)
        if not path.exists():
            raise RuntimeError(f"npm pack {spec} did not write {path}")
    return path


def _extract(tgz: Path, member: str, dest: Path) -> None:
    with tarfile.open(tgz) as tar:
        src = tar.extractfile(f"package/{member}")
        if src is None:
            raise RuntimeError(f"{tgz.name} has no {member}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read())


def vendor(html_dir: Path, cache: Path) -> list[str]:
    """Copy the dependencies into ``html_dir/vendor`` and rewrite the pages; returns the
    network URLs that the pages still load (should be empty)."""
    vendor_dir = html_dir / "vendor"
    for spec, member, local in VENDOR.values():
        _extract(_tarball(spec, cache), member, vendor_dir / local)
    for spec, files in EXTRA.items():
        for member, local in files:
            _extract(_tarball(spec, cache), member, vendor_dir / local)
    remaining = []
    for page in sorted(html_dir.glob("*.html")):
        text = page.read_text(encoding="utf-8")

        def local(m: re.Match[str], page: Path = page) -> str:
            tag, url = m.group(0), m.group(2)
            if url not in VENDOR:
                remaining.append(f"{page.name}: {url}")
                return tag
            return _DROP.sub("", tag.replace(url, "vendor/" + VENDOR[url][2]))

        new = _TAG.sub(local, text)
        if new != text:
            page.write_text(new, encoding="utf-8")
    return remaining


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html_dir", nargs="?", default=".asv/html",
                    help="asv's published HTML (default .asv/html)")
    ap.add_argument("--cache", default=".asv/vendor-cache",
                    help="where the npm tarballs are kept (default .asv/vendor-cache)")
    args = ap.parse_args(argv)
    html_dir = Path(args.html_dir)
    if not (html_dir / "index.html").exists():
        print(f"error: {html_dir}/index.html not found: run `asv publish` first",
              file=sys.stderr)
        return 2
    try:
        remaining = vendor(html_dir, Path(args.cache))
    except (RuntimeError, subprocess.SubprocessError, OSError, tarfile.TarError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if remaining:
        print("still loaded from the network:\n  " + "\n  ".join(remaining), file=sys.stderr)
        return 1
    print(f"{html_dir}: dependencies vendored in {html_dir / 'vendor'}; works offline")
    return 0


if __name__ == "__main__":
    sys.exit(main())

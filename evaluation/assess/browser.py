"""What the editor sees: the HTML table rendered by headless Chromium, as a PNG and as layout.

The report editor pastes the table into a document as a picture, so the picture is what must
be right: every scheme row, the legend, the labels, nothing cut off at the right edge. Where
Chromium is installed (Debian package ``chromium``) :func:`render_png` writes the screenshot
and :func:`layout` reports what a reader's browser laid out (page and table widths, the rows
and labels in the DOM); where it is absent both say so and the report goes on without a PNG.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1600            # CSS pixels: a landscape page at a readable size
TIMEOUT_S = 120
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars", "--force-device-scale-factor=1", "--mute-audio")
_PROBE = """<script>(function(){var d=document.documentElement,b=document.body;
var t=[].slice.call(document.querySelectorAll('table')).map(function(x){
 return {cls:x.className,criterion:x.getAttribute('data-criterion'),width:x.scrollWidth,
         room:x.parentElement.clientWidth,rows:x.tBodies.length?x.tBodies[0].rows.length:0};});
var s=[].slice.call(document.querySelectorAll('table.overview tbody tr')).map(function(r){return r.cells[0].textContent;});
var o={scrollWidth:Math.max(d.scrollWidth,b.scrollWidth),clientWidth:d.clientWidth,
       scrollHeight:Math.max(d.scrollHeight,b.scrollHeight),tables:t,schemes:s,
       legend:[].slice.call(document.querySelectorAll('.legend span')).map(function(x){return x.textContent;}),
       labels:[].slice.call(document.querySelectorAll('td[data-label]')).map(function(x){return x.getAttribute('data-label');})};
var p=document.createElement('pre');p.id='e2eebench-layout';p.textContent=JSON.stringify(o);b.appendChild(p);})();</script>"""


class BrowserMissing(RuntimeError):
    """No Chromium on this machine."""


def find_chromium() -> str | None:
    for name in CANDIDATES:
        if (p := shutil.which(name)):
            return p
    return None


def _run(args: list[str]) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise BrowserMissing("Chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="e2eebench-chromium-") as profile:
        r = subprocess.run([exe, *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                           text=True, timeout=TIMEOUT_S)
    return r


@dataclass
class Layout:
    """What Chromium laid out, at ``WIDTH`` CSS pixels."""

    scroll_width: int
    client_width: int
    scroll_height: int
    tables: list[dict]
    schemes: list[str]
    legend: list[str]
    labels: list[str]

    @property
    def overflows(self) -> bool:
        return self.scroll_width > self.client_width

    def wide_tables(self) -> list[dict]:
        return [t for t in self.tables if t["width"] > t["room"]]


def layout(html_path: str | Path, width: int = WIDTH) -> Layout:
    """Lay the page out in headless Chromium and read back widths, scheme rows, legend and labels."""
    src = Path(html_path).read_text()
    probe = src.replace("</body>", _PROBE + "</body>") if "</body>" in src else src + _PROBE
    with tempfile.TemporaryDirectory(prefix="e2eebench-layout-") as d:
        page = Path(d) / "page.html"
        page.write_text(probe)
        r = _run([f"--window-size={width},1000", "--virtual-time-budget=3000", "--dump-dom", page.as_uri()])
    m = re.search(r'<pre id="e2eebench-layout">(.*?)</pre>', r.stdout, re.S)
    if m is None:
        raise RuntimeError(f"Chromium returned no layout (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    import html
    o = json.loads(html.unescape(m.group(1)))
    return Layout(o["scrollWidth"], o["clientWidth"], o["scrollHeight"], o["tables"], o["schemes"], o["legend"],
                  o["labels"])


def render_png(html_path: str | Path, png_path: str | Path, width: int = WIDTH) -> Layout:
    """Screenshot the whole page (its full height, ``width`` wide) to ``png_path``; returns the layout."""
    lay = layout(html_path, width)
    height = min(max(lay.scroll_height, 200), 30000)
    png = Path(png_path)
    tmp = png.with_name(f".{png.name}.tmp.png")
    try:
        r = _run([f"--window-size={max(width, lay.scroll_width)},{height}", f"--screenshot={tmp}",
                  Path(html_path).resolve().as_uri()])
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise RuntimeError(f"Chromium wrote no screenshot (exit {r.returncode}): {r.stderr.strip()[-300:]}")
        tmp.replace(png)
    finally:
        if tmp.exists():
            tmp.unlink()
    return lay

"""Open every page of the built book in headless Chromium and check what a reader sees.

Run after ``make book`` (``.ci/run`` calls it after ``check_book.py``)::

    python .ci/browser_check.py                  # every page of _build/html
    python .ci/browser_check.py --pages intro 01_shape_model

The pages are served from ``127.0.0.1`` and every other request is refused (the book must read
offline). For each page it fails on

- a JavaScript error (uncaught exception or ``console.error``), a failed or refused request
  (a missing font file, a CDN script);
- MathJax not finishing, reporting an error (TeX parse error, math processing error, a file
  that failed to load, a web font it could not use), or rendering with another font than the
  one configured in ``_config.yml`` (``HTML-CSS.webFont``);
- equations drawn wrongly: on a probe typeset with the page's own MathJax, the bar of
  ``\\bar{s}`` must sit on its letter, ``\\mathbf{s}`` must be bolder than ``\\mathrm{s}``, and
  inline math must have the size and baseline of the text around it (measured from the pixels);
- a plotly figure without drawn data (no traces, no SVG, or a 3D scene without WebGL);
- an empty widget box;
- an output or table wider than the page (a horizontal scroll bar hiding text).

A full-page screenshot of every page goes to ``_build/screenshots/<page>.png``.

The browser is the system Chromium (``$CHROMIUM``, else ``chromium``, ``chromium-browser``,
``google-chrome`` on ``$PATH``) driven by Playwright's Python package (pinned in
requirements.txt; never ``playwright install``). With no browser on the machine the check
prints why and exits 0 (skipped); every other problem exits 1.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
WIDTH, HEIGHT = 1280, 900
#: MathJax signals that mean an equation or a font went wrong (its startup signals such as
#: "TeX noErrors Ready" name extensions and are not errors).
MATHJAX_BAD = re.compile(r"math processing error|parse error|file load error|not available|"
                         r"no valid font|image font|failed", re.I)
#: Browser messages that are not a reader's problem, each with the reason.
IGNORED = {
    # MathJax 2's HTML-CSS output defines a blank font at about:blank to time its web fonts
    "about:blank": "MathJax's blank font, used to detect when its web fonts have loaded",
}
MATHJAX_TIMEOUT_MS = 120_000

# Set before any page script runs. MathJax 2.7 reads an object in ``window.MathJax`` as its
# configuration and calls its AuthorInit once its core is defined; the page assigns its own object
# (myst-nb writes one), so a setter adds our AuthorInit to whatever object is assigned, and every
# signal MathJax posts is recorded.
INIT_SCRIPT = r"""
(function () {
  window.__mj = {messages: []};
  var keep = function (m) {
    var text = [].concat(m).filter(function (x) { return typeof x === "string"; }).join(" | ");
    window.__mj.messages.push(text);
  };
  var hook = function () {
    MathJax.Hub.signal.Interest(keep);
    MathJax.Hub.Startup.signal.Interest(keep);
  };
  var value;
  Object.defineProperty(window, "MathJax", {configurable: true, get: function () { return value; },
    set: function (v) {
      if (v && typeof v === "object" && !v.Hub && !v.AuthorConfig) {
        var prev = v.AuthorInit;
        v.AuthorInit = function () { hook(); if (prev) prev(); };
      }
      value = v;
    }});
  window.MathJax = {};
})();
"""

WAIT_MATHJAX = """(timeout) => new Promise((resolve) => {
  const t0 = Date.now();
  const poll = () => {
    if (!document.querySelector('script[src*="MathJax.js"]')) return resolve("absent");
    if (window.MathJax && MathJax.isReady && MathJax.Hub) return MathJax.Hub.Queue(() => resolve("done"));
    if (Date.now() - t0 > timeout) return resolve("timeout");
    setTimeout(poll, 100);
  };
  poll();
})"""

MATHJAX_STATE = """() => {
  const out = window.MathJax && MathJax.OutputJax && MathJax.OutputJax["HTML-CSS"];
  const cfg = (window.MathJax && MathJax.Hub && MathJax.Hub.config["HTML-CSS"]) || {};
  return {
    messages: window.__mj ? window.__mj.messages : [],
    fontInUse: out ? out.fontInUse || null : null,
    webFont: cfg.webFont || null,
    imageFont: cfg.imageFont === undefined ? null : cfg.imageFont,
    jax: (window.MathJax && MathJax.Hub) ? MathJax.Hub.getAllJax().length : 0,
    errors: document.querySelectorAll(".MathJax_Error, .merror, .noError").length,
    faces: Array.from(document.fonts).filter(f => f.status === "loaded").map(f => f.family),
  };
}"""

# A probe typeset by the page's own MathJax, big enough to measure from its pixels.
PROBE = r"""() => new Promise((resolve) => {
  const box = document.createElement("p");
  box.id = "__probe";
  box.style.cssText = "position:absolute;left:0;top:0;z-index:99999;background:#fff;color:#000;" +
                      "font-size:60px;line-height:1.6;padding:20px 30px;white-space:nowrap";
  const parts = {bar: "\\bar{s}", s: "s", bold: "\\mathbf{s}", roman: "\\mathrm{s}", inline: "x"};
  for (const [name, tex] of Object.entries(parts)) {
    if (name === "inline") {
      const t = document.createElement("span"); t.id = "__probe_text"; t.textContent = "x";
      box.appendChild(t);
    }
    // the book's own markup for inline math, so the theme's CSS applies as on the pages
    const span = document.createElement("span");
    span.id = "__probe_" + name;
    span.className = "math notranslate nohighlight";
    span.style.cssText = "margin:0 0.6em";
    const script = document.createElement("script");
    script.type = "math/tex"; script.text = tex;
    span.appendChild(script); box.appendChild(span);
  }
  document.body.appendChild(box);
  window.scrollTo(0, 0);
  MathJax.Hub.Queue(["Typeset", MathJax.Hub, box], () => {
    const r = (id) => { const b = document.getElementById(id).getBoundingClientRect();
                        return [b.left, b.top, b.right, b.bottom]; };
    const ids = ["bar", "s", "bold", "roman", "inline"].map(n => "__probe_" + n);
    const rects = Object.fromEntries(ids.concat(["__probe", "__probe_text"]).map(i => [i, r(i)]));
    resolve(rects);
  });
})"""

LAYOUT = """() => {
  const wide = [];
  // what the notebooks printed or displayed, and the tables of the prose (code may scroll)
  const outputs = ".cell_output .output, .cell_output pre, .cell_output table, .bd-article table";
  for (const el of document.querySelectorAll(outputs)) {
    if (el.closest(".cell_input")) continue;
    if (el.scrollWidth > el.clientWidth + 2) {
      const text = (el.innerText || "").trim().split("\\n")[0].slice(0, 70);
      wide.push(`${el.scrollWidth} px in ${el.clientWidth} px: ${text}`);
    }
  }
  const plots = [];
  for (const el of document.querySelectorAll(".js-plotly-plot")) {
    const n = Array.isArray(el.data) ? el.data.length : 0;
    const svg = el.querySelector(".main-svg");
    const gl = el.querySelector(".gl-container canvas, canvas");
    const needsGl = Array.isArray(el.data) && el.data.some(t => /3d|mesh|surface|gl/.test(t.type || ""));
    const noGl = el.querySelector(".no-webgl") || /WebGL is not supported/i.test(el.innerText || "");
    plots.push({n, svg: !!svg, gl: !!gl, needsGl, noGl: !!noGl});
  }
  const emptyWidgets = Array.from(document.querySelectorAll(".jupyter-widgets, .widget-area, .jupyter-widgets-view"))
    .filter(el => el.children.length === 0 || el.getBoundingClientRect().height < 2).length;
  return {wide, plots, emptyWidgets};
}"""


def find_browser() -> str | None:
    """Path of a Chromium on this machine (``$CHROMIUM`` first), or None."""
    if os.environ.get("CHROMIUM"):
        given = os.environ["CHROMIUM"]
        return shutil.which(given) or (given if os.access(given, os.X_OK) else None)
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    return None


def ink_rows(img, left: int, right: int, threshold: int = 140) -> list[tuple[int, int]]:
    """Runs ``(first, last)`` of image rows that have dark pixels between columns left..right."""
    import numpy as np

    a = np.asarray(img.convert("L"))[:, max(left, 0):right] < threshold
    rows = np.flatnonzero(a.any(axis=1))
    runs: list[tuple[int, int]] = []
    for r in rows:
        if runs and r == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], int(r))
        else:
            runs.append((int(r), int(r)))
    return runs


def check_probe(img, rects: dict, scale: float) -> list[str]:
    """Measure the probe's pixels: bar on its letter, bold bolder, inline math at text size."""
    import numpy as np

    box = rects["__probe"]

    def cols(name):
        l, _, r, _ = rects[name]
        return int((l - box[0]) * scale), int((r - box[0]) * scale)

    def ink(name):
        l, r = cols(name)
        return int((np.asarray(img.convert("L"))[:, l:r] < 140).sum())

    problems = []
    bar, s = ink_rows(img, *cols("__probe_bar")), ink_rows(img, *cols("__probe_s"))
    if len(bar) < 2 or not s:
        problems.append(f"\\bar{{s}} drew {len(bar)} separate ink bands, expected the bar and the letter")
    else:
        letter = s[0][1] - s[0][0] + 1
        gap = bar[-1][0] - bar[-2][1] - 1
        if gap > 0.5 * letter:
            problems.append(f"the bar of \\bar{{s}} floats {gap} px above its letter "
                            f"(the letter is {letter} px high)")
    bold, roman = ink("__probe_bold"), ink("__probe_roman")
    if roman == 0 or bold < 1.15 * roman:
        problems.append(f"\\mathbf{{s}} is not bold ({bold} dark pixels against {roman} for \\mathrm{{s}})")
    text, math = ink_rows(img, *cols("__probe_text")), ink_rows(img, *cols("__probe_inline"))
    if text and math:
        th, mh = text[-1][1] - text[-1][0] + 1, math[-1][1] - math[-1][0] + 1
        if not 0.7 <= mh / th <= 1.45:
            problems.append(f"inline math x is {mh} px high beside text x of {th} px")
        if abs(math[-1][1] - text[-1][1]) > 0.25 * th:
            problems.append(f"inline math sits {text[-1][1] - math[-1][1]} px off the text baseline")
    return problems


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``root`` on an ephemeral port of 127.0.0.1; returns the server and its base URL."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def save_screenshot(page, path: Path, tile: int = 4000) -> None:
    """A full-page screenshot, captured in tiles and stitched: one capture taller than the
    software renderer's largest texture (8192 px) wraps around and repeats the page's top."""
    from PIL import Image

    height = int(page.evaluate("document.documentElement.scrollHeight"))
    width = int(page.viewport_size["width"])
    whole = Image.new("RGB", (width, height), "white")
    for y in range(0, height, tile):
        h = min(tile, height - y)
        png = page.screenshot(clip={"x": 0, "y": y, "width": width, "height": h}, full_page=True)
        whole.paste(Image.open(io.BytesIO(png)).convert("RGB"), (0, y))
    whole.save(path, optimize=True)


def check_page(context, url: str, name: str, shots: Path, probe: bool) -> list[str]:
    """Every problem a reader would meet on one page (an empty list when it reads well)."""
    from PIL import Image

    problems: list[str] = []
    page = context.new_page()

    def report(text: str) -> None:
        if not any(key in text for key in IGNORED):
            problems.append(text)

    page.on("pageerror", lambda e: report(f"JavaScript error: {e}"))
    # "Failed to load resource" repeats a failed request, which is reported with its address
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
            and report(f"console error: {m.text[:200]}"))
    page.on("requestfailed", lambda r: report(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and report(f"HTTP {r.status}: {r.url}"))
    page.goto(url, wait_until="load", timeout=120_000)
    state = page.evaluate(WAIT_MATHJAX, MATHJAX_TIMEOUT_MS)
    if state == "timeout":
        problems.append("MathJax did not finish typesetting")
    if state == "done":
        mj = page.evaluate(MATHJAX_STATE)
        problems += [f"MathJax: {m}" for m in mj["messages"]
                     if MATHJAX_BAD.search(m) and not m.endswith(" Ready")]
        if mj["errors"]:
            problems.append(f"MathJax drew {mj['errors']} error boxes")
        if mj["jax"] and mj["fontInUse"] != mj["webFont"]:
            problems.append(f"MathJax renders with font {mj['fontInUse']!r}, configured {mj['webFont']!r}")
        if mj["jax"] and not any("STIX" in f or "MathJax" in f for f in mj["faces"]):
            problems.append(f"no MathJax web font loaded (loaded: {sorted(set(mj['faces']))})")
        if probe:
            rects = page.evaluate(PROBE)
            scale = page.evaluate("window.devicePixelRatio")
            png = page.locator("#__probe").screenshot()
            problems += check_probe(Image.open(io.BytesIO(png)), rects, scale)
            page.evaluate("document.getElementById('__probe').remove()")
    page.wait_for_timeout(500)  # plotly draws after load
    layout = page.evaluate(LAYOUT)
    problems += [f"wider than the page: {w}" for w in layout["wide"]]
    for k, p in enumerate(layout["plots"]):
        if p["n"] == 0 or not p["svg"]:
            problems.append(f"plotly figure {k + 1} has no drawn data")
        elif p["needsGl"] and (p["noGl"] or not p["gl"]):
            problems.append(f"plotly figure {k + 1} has a 3D scene but no WebGL canvas")
    if layout["emptyWidgets"]:
        problems.append(f"{layout['emptyWidgets']} empty widget boxes")
    # scroll through once so that lazily drawn content is there, then capture the whole page
    page.evaluate("async () => { for (let y = 0; y < document.body.scrollHeight; y += 800) {"
                  " window.scrollTo(0, y); await new Promise(r => setTimeout(r, 30)); } window.scrollTo(0, 0); }")
    save_screenshot(page, shots / f"{name}.png")
    print(f"{name}: MathJax {state}, {len(layout['plots'])} plotly figures, "
          f"{len(problems)} problems", flush=True)
    page.close()
    return problems


def pages(html: Path, only: list[str] | None) -> list[tuple[str, Path]]:
    """``(name, path)`` of every built page (the book's own, not Sphinx's search/genindex)."""
    found = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts
                   and p.name not in ("search.html", "genindex.html", "py-modindex.html"))
    # index.html is a redirect to the root page
    out = [(p.stem, p) for p in found if 'http-equiv="refresh"' not in p.read_text(errors="replace")[:2000].lower()]
    if only:
        out = [(n, p) for n, p in out if n in only]
        missing = set(only) - {n for n, _ in out}
        if missing:
            raise SystemExit(f"no built page for {sorted(missing)} under {html}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--html", type=Path, default=HTML, help="the built book (default _build/html)")
    ap.add_argument("--shots", type=Path, default=SHOTS, help="screenshot folder")
    ap.add_argument("--pages", nargs="*", help="page names (file stems) to check; default every page")
    args = ap.parse_args(argv)
    browser_path = find_browser()
    if browser_path is None:
        print("SKIPPED: no Chromium found (set $CHROMIUM or install Debian's `chromium`); "
              "the browser check did not run")
        return 0
    from playwright.sync_api import sync_playwright

    if not (args.html / "index.html").exists() and not args.pages:
        print(f"PROBLEM: no built book at {args.html} (run `make book` first)")
        return 1
    args.shots.mkdir(parents=True, exist_ok=True)
    server, base = serve(args.html)
    failures: dict[str, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True,
                                     args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                           "--ignore-gpu-blocklist", "--no-sandbox"])
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, offline=False)
        # the network is off: anything not served by our server is refused (and reported)
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                      or route.request.url.startswith("data:") else route.abort("blockedbyclient"))
        context.add_init_script(INIT_SCRIPT)
        for k, (name, path) in enumerate(pages(args.html, args.pages)):
            url = base + path.relative_to(args.html).as_posix()
            try:
                problems = check_page(context, url, name, args.shots, probe=True)
            except Exception as e:  # a page that cannot be checked is a failure, not a crash
                problems = [f"could not check the page: {type(e).__name__}: {e}"]
            if problems:
                failures[name] = problems
        browser.close()
    server.shutdown()
    for name, problems in failures.items():
        for p in dict.fromkeys(problems):
            print(f"PROBLEM: {name}: {p}")
    print(f"screenshots: {args.shots}")
    print(json.dumps({"pages_with_problems": len(failures)}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

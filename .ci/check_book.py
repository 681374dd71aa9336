"""Checks on the built HTML book that a reader would notice (run after `make book`).

- every chapter of _toc.yml has a page;
- no page keeps an empty widget box (a widget view without a kernel);
- no page draws more 3D scenes than browsers give WebGL contexts (16; we keep a margin);
- plotly.js and MathJax come from the book's own files, not a CDN;
- pages stay a reasonable size;
- what the chapters print reads as a person would write it: no raw float with six or more
  decimals (``41.799999``, ``8.000001e-01``), no numpy reprs (``np.int64(300)``), no pandas bin
  labels (``(-0.001, 15.0]``), and no output shown twice on a page.

The browser check (``.ci/browser_check.py``) then opens every page in headless Chromium.
"""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
MAX_SCENES, MAX_MB = 12, 12
#: Text a person would not write, each with what it looks like.
RAW_NUMBERS = {
    r"(?<![\w.])-?\d+\.\d{6,}(?![\w.])": "a float with six or more decimals",
    r"(?<![\w.])-?\d(\.\d+)?e[-+]\d\d(?![\w.])": "a number in exponent notation",
    r"\bnp\.(int|float|bool)\w*\(": "a numpy repr",
    r"\(-?\d+(\.\d+)?, -?\d+(\.\d+)?\]": "a pandas interval label",
}
MIN_DUPLICATE = 40  # characters: shorter outputs (a number, "done") may repeat


class _Outputs(HTMLParser):
    """The text of every cell output of a page (scripts and styles left out)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.outputs: list[str] = []
        self._depth = 0  # div nesting inside the current cell_output (0: outside)
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        if tag != "div":
            return
        if self._depth:
            self._depth += 1
        elif "cell_output" in (dict(attrs).get("class") or ""):
            self._depth = 1
            self.outputs.append("")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        if tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth and not self._skip:
            self.outputs[-1] += data


def reading_problems(name: str, text: str) -> list[str]:
    """Numbers and repeats in a page's outputs that a reader should not meet."""
    parser = _Outputs()
    parser.feed(text)
    problems, seen = [], set()
    for out in parser.outputs:
        for pattern, what in RAW_NUMBERS.items():
            m = re.search(pattern, out)
            if m:
                problems.append(f"{name}: {what} in an output: {m.group(0)!r}")
        key = " ".join(out.split())
        if len(key) >= MIN_DUPLICATE and key in seen:
            problems.append(f"{name}: an output shown twice: {key[:60]!r}")
        seen.add(key)
    return problems


def chapters(toc):
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        for ch in part.get("chapters", []):
            yield ch["file"]


def main() -> int:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    problems = []
    for name in [toc["root"], *chapters(toc)]:
        page = HTML / f"{name}.html"
        if not page.is_file():
            problems.append(f"{page}: missing")
            continue
        text = page.read_text(errors="replace")
        mb = len(text) / 1e6
        scenes = 0
        for block in re.findall(r"Plotly\.newPlot\((.*?)\)\s*\};", text, re.S):
            data = block.split('{"template"', 1)[0]  # the traces, before the layout's template
            if re.search(r'"type":"(mesh3d|scatter3d|surface)"', data):
                scenes += max(1, len(set(re.findall(r'"scene":"(scene\d*)"', data))))
        if "application/vnd.jupyter.widget-view+json" in text:
            problems.append(f"{name}: an ipywidget view without a kernel (empty widget box)")
        if scenes > MAX_SCENES:
            problems.append(f"{name}: {scenes} 3D scenes (browsers keep about 16 WebGL contexts)")
        if re.search(r"<script[^>]+src=\"https?://[^\"]*(plotly|mathjax)", text, re.I):
            problems.append(f"{name}: loads plotly.js or MathJax from the network")
        problems += reading_problems(name, text)
        if mb > MAX_MB:
            problems.append(f"{name}: {mb:.1f} MB")
        print(f"{name}: {mb:.1f} MB, {scenes} 3D scenes, "
              f"{text.count('Plotly.newPlot')} plotly figures, {text.count('<img')} images")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks on the built HTML book that a reader would notice (run after `make book`).

- every chapter of _toc.yml has a page;
- no page keeps an empty widget box (a widget view without a kernel);
- no page draws more 3D scenes than browsers give WebGL contexts (16; we keep a margin);
- plotly.js and MathJax come from the book's own files, not a CDN;
- pages stay a reasonable size.
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
MAX_SCENES, MAX_MB = 12, 12


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
        if mb > MAX_MB:
            problems.append(f"{name}: {mb:.1f} MB")
        print(f"{name}: {mb:.1f} MB, {scenes} 3D scenes, "
              f"{text.count('Plotly.newPlot')} plotly figures, {text.count('<img')} images")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the HTML diagnostics report of an example model and screenshot it in headless Chromium.

    python scripts/render_report.py [--out-dir build/report] [--screenshot PATH] [--chromium PATH]

The model is the 30-layer ReLU MLP of ``examples/diagnose_mlp.py`` with ``nn.Linear``'s default
initialization (verdict: vanishing). Chromium is Debian's ``chromium`` package
(``apt-get install -y chromium``); the page is a local file and the browser makes no network calls.
The page is opened with the demo report's checker (``render_demo_report.py``): any console error
or image that does not decode fails the script.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from render_demo_report import add_chromium_option, browse, no_chromium, problems

from initscope import diagnose

ROOT = Path(__file__).resolve().parents[1]


def example_model() -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location(
        "diagnose_mlp", ROOT / "examples" / "diagnose_mlp.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.make_mlp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "build" / "report")
    parser.add_argument("--screenshot", type=Path, help="default: OUT_DIR/diagnose_report.png")
    add_chromium_option(parser)
    args = parser.parse_args(argv)
    if not args.chromium:
        return no_chromium()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = diagnose(
        example_model(), input_shape=(128, 256), generator=torch.Generator().manual_seed(0)
    )
    html = report.to_html(args.out_dir / "diagnose_report.html")
    png = args.screenshot or args.out_dir / "diagnose_report.png"
    found = problems(browse(args.chromium, html, png, 1800))
    for p in found:
        print(p, file=sys.stderr)
    print(f"verdict {report.verdict}; wrote {html} and {png}; {len(found)} console error(s)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Write the HTML diagnostics report of an example model and screenshot it in headless Chromium.

    python scripts/render_report.py [--out-dir build/report] [--screenshot PATH] [--chromium PATH]

The model is the 30-layer ReLU MLP of ``examples/diagnose_mlp.py`` with ``nn.Linear``'s default
initialization (verdict: vanishing). Chromium is Debian's ``chromium`` package
(``apt-get install -y chromium``); the page is a local file and the browser makes no network calls.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

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


def screenshot(chromium: str, html: Path, png: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png}",
                "--window-size=1400,1800", html.resolve().as_uri(),
            ],
            check=True, timeout=240, capture_output=True,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "build" / "report")
    parser.add_argument("--screenshot", type=Path, help="default: OUT_DIR/diagnose_report.png")
    parser.add_argument(
        "--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser")
    )
    args = parser.parse_args(argv)
    if not args.chromium:
        print(
            "chromium not found: apt-get install -y chromium, or pass --chromium", file=sys.stderr
        )
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = diagnose(
        example_model(), input_shape=(128, 256), generator=torch.Generator().manual_seed(0)
    )
    html = report.to_html(args.out_dir / "diagnose_report.html")
    png = args.screenshot or args.out_dir / "diagnose_report.png"
    screenshot(args.chromium, html, png)
    print(f"verdict {report.verdict}; wrote {html} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

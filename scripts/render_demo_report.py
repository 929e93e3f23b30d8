"""Open the demo's report.html in headless Chromium: screenshot it, fail on any console error.

    python scripts/render_demo_report.py [--report DIR/report.html] [--screenshot PATH]

Without ``--report`` it first runs ``initscope demo --quick --out build/demo-report``. A copy of
the report gets a small checker script: it turns page errors, failed resources and
``console.error`` / ``console.warn`` into log lines marked ``PAGE-ERROR`` and, once the page has
loaded, logs how many images decoded. The script fails (exit 1) on any such line, on an image
that did not decode, or when the checker never reported. Before the report, the same check runs on
a page with a broken image and a ``console.error``, and must catch both: a check that cannot fail
proves nothing.

Chromium is Debian's ``chromium`` package (``apt-get install -y chromium``); the page is a local
file and the browser is started with its network features off.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKER = """<script>
(function () {
  const report = (what) => console.log("PAGE-ERROR " + what);
  window.addEventListener("error", (e) => report(e.message || ("failed to load " +
    (e.target && (e.target.src || e.target.href)))), true);
  for (const level of ["error", "warn"]) {
    const original = console[level];
    console[level] = (...args) => { report(level + ": " + args.join(" ")); original(...args); };
  }
  window.addEventListener("load", () => {
    let ok = 0;
    for (const img of document.images) {
      if (img.complete && img.naturalWidth > 0) ok += 1;
      else report("image did not decode: " + img.alt);
    }
    console.log("IMAGES-DECODED " + ok + " of " + document.images.length);
  });
})();
</script>
"""
CANARY = (
    "<!DOCTYPE html><html><body><p>canary</p>"
    "<img alt='broken' src='data:image/png;base64,AAAA'>"
    "<script>console.error('canary error');</script></body></html>\n"
)
_CONSOLE = re.compile(r'CONSOLE[^\]]*\] "(.*)", source:')


def browse(chromium: str, html: Path, png: Path, height: int) -> list[str]:
    """Screenshot ``html`` (a copy with the checker) into ``png``; the page's console lines."""
    text = html.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / html.name
        page.write_text(text.replace("<body>", "<body>" + CHECKER, 1))
        result = subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-sync", "--disable-quic", f"--user-data-dir={Path(tmp) / 'profile'}",
                "--enable-logging=stderr", "--v=0", f"--screenshot={png.resolve()}",
                f"--window-size=1500,{height}", page.resolve().as_uri(),
            ],
            check=True, timeout=300, capture_output=True, text=True,
        )  # fmt: skip
    return _CONSOLE.findall(result.stdout + result.stderr)


def add_chromium_option(parser: argparse.ArgumentParser) -> None:
    """``--chromium PATH``, by default Debian's ``chromium`` found on ``PATH``."""
    parser.add_argument(
        "--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser")
    )


def no_chromium() -> int:
    """Say how to get Chromium; the exit code for a missing tool."""
    print("chromium not found: apt-get install -y chromium, or pass --chromium", file=sys.stderr)
    return 2


def problems(lines: list[str]) -> list[str]:
    """What is wrong, from the console lines: page errors, undecoded images, no checker report."""
    found = [line for line in lines if line.startswith("PAGE-ERROR")]
    decoded = [line for line in lines if line.startswith("IMAGES-DECODED")]
    if not decoded:
        found.append("the checker never reported (the page did not finish loading?)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, help="default: run the quick demo first")
    parser.add_argument("--screenshot", type=Path, help="default: next to the report, .png")
    parser.add_argument("--height", type=int, default=3200, help="screenshot height in pixels")
    add_chromium_option(parser)
    args = parser.parse_args(argv)
    if not args.chromium:
        return no_chromium()
    report = args.report
    if report is None:
        out = ROOT / "build" / "demo-report"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        subprocess.run(
            [sys.executable, "-m", "initscope", "demo", "--quick", "--out", str(out)],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        report = out / "report.html"
    png = args.screenshot or report.with_suffix(".png")

    with tempfile.TemporaryDirectory() as tmp:
        canary = Path(tmp) / "canary.html"
        canary.write_text(CANARY)
        caught = problems(browse(args.chromium, canary, Path(tmp) / "canary.png", 400))
    if not (any("canary error" in p for p in caught) and any("broken" in p for p in caught)):
        print(f"the checker missed the canary's errors: {caught}", file=sys.stderr)
        return 1

    lines = browse(args.chromium, report, png, args.height)
    found = problems(lines)
    decoded = next((line for line in lines if line.startswith("IMAGES-DECODED")), "")
    for p in found:
        print(p, file=sys.stderr)
    print(f"{report}: {decoded.lower() or 'no image report'}, {len(found)} console error(s); "
          f"screenshot {png}")  # fmt: skip
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())

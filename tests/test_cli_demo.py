"""``initscope demo``: the quick run writes report.html, results.json and one PNG per experiment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import initscope.cli.demo as demo_cli
from initscope.cli import main
from initscope.cli._common import CLIError
from initscope.cli.demo import parse_only
from initscope.experiments import EXPERIMENTS

pytest.importorskip("sklearn")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_demo_quick_writes_report_json_and_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"Report: {out / 'report.html'}" in captured.out
    # up front, before the table: how many reproduced, and that the others are not hidden
    first = " ".join(captured.out.split("┏")[0].split())  # rich wraps long lines
    assert "claims reproduced" in first and "not hidden" in first and "quick run" in first
    assert "initscope demo" in captured.err  # tqdm progress goes to stderr

    for name in EXPERIMENTS:
        png = out / f"demo_{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC

    data = json.loads((out / "results.json").read_text())
    assert data["quick"] is True and data["seed"] == 0
    assert list(data["experiments"]) == list(EXPERIMENTS)
    n_claims = 0
    for name, entry in data["experiments"].items():
        assert entry["title"] and isinstance(entry["verdict"], str) and entry["verdict"]
        assert entry["claims"] and all(isinstance(c["reproduced"], bool) for c in entry["claims"])
        n_claims += len(entry["claims"])
        assert data["seconds"][name] > 0

    html = (out / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") == len(EXPERIMENTS)  # self-contained
    assert html.count("<td class=") == 2 * n_claims  # summary table + one table per experiment
    assert "http" not in html  # nothing to fetch
    head = html.split("<h2>Summary</h2>")[0]  # before the tables: the headline, what failed
    assert "not hidden" in head and "Not reproduced:" in head
    assert "C / K" in html.split("id='glossary'")[1]  # the glossary decodes the notation


def test_only_parses_and_orders() -> None:
    assert parse_only(None) == list(EXPERIMENTS)
    assert parse_only("pricing, scale_sweep") == ["scale_sweep", "pricing"]
    with pytest.raises(CLIError, match="unknown experiment bogus; valid: symmetry, scale_sweep"):
        parse_only("scale_sweep,bogus")
    with pytest.raises(CLIError, match="--only"):
        parse_only(",")


def test_bad_only_is_a_usage_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    assert main(["demo", "--quick", "--only", "nope", "--out", str(out)]) == 2
    assert "--only: unknown experiment nope" in capsys.readouterr().err
    assert not out.exists()


def test_out_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file.txt"
    out.write_text("keep")
    assert main(["demo", "--quick", "--only", "deep_linear", "--out", str(out)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert out.read_text() == "keep"


def test_missing_sklearn_is_a_clear_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_cli, "_has_sklearn", lambda: False)
    out = tmp_path / "out"
    assert main(["demo", "--quick", "--only", "xavier_vs_he", "--out", str(out)]) == 2
    assert "need scikit-learn: pip install scikit-learn" in capsys.readouterr().err
    assert not out.exists()

"""`python -m mixmerge.report` as a user runs it: the synthetic study under outputs/models, the
report in the run directory and outputs/report/latest, tables and figures to W&B offline."""

from __future__ import annotations

import json

from tests.helpers import run_cli
from tests.report_helpers import build_study


def test_report_cli_writes_files_and_logs_tables_and_images_to_wandb(tmp_path):
    build_study(tmp_path, tmp_path / "outputs/models")
    result = run_cli(
        "mixmerge.report", "logger=wandb", "group=tiny_study", "hydra.run.dir=run", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Report of 14 evaluated model(s)" in result.stdout
    assert "Tables and figures logged to WandbLogger" in result.stdout
    for folder in (tmp_path / "run", tmp_path / "outputs/report/latest"):
        assert (folder / "report.md").is_file() and (folder / "main.csv").is_file()
        assert (folder / "pareto.png").stat().st_size > 10_000
    runs = list((tmp_path / "run/wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    tables = {p.name.split("_")[0]: p for p in runs[0].rglob("*.table.json")}
    main = json.loads(tables["main"].read_text())
    assert "published_harm_change_pct" in main["columns"] and len(main["data"]) == 14
    assert {"paired", "parents"} <= set(tables)  # paired.csv and merge_parents.csv too
    assert b"tiny_study" in next(runs[0].glob("*.wandb")).read_bytes()  # the study's W&B group
    images = sorted(p.name.rsplit("_", 2)[0] for p in runs[0].rglob("*.png"))
    assert images == ["heatmap", "pareto", "weight_sensitivity"]
    # The report's own folders hold no models: a second report finds the same 14.
    again = run_cli("mixmerge.report", "hydra.run.dir=run2", cwd=tmp_path)
    assert again.returncode == 0 and "Report of 14 evaluated model(s)" in again.stdout


def test_report_cli_malformed_results_one_line_exit_2(tmp_path):
    build_study(tmp_path, tmp_path / "outputs/models")
    bad = tmp_path / "outputs/models/merge-objective-linear-w0.3/eval_results.json"
    bad.write_text('{"model": {"path": "x"}, "average": {"harm_change_pct": "high"}}')
    result = run_cli("mixmerge.report", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("mixmerge: error:")]
    assert len(errors) == 1 and str(bad) in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs/report/latest").exists()


def test_report_cli_with_nothing_to_report(tmp_path):
    result = run_cli("mixmerge.report", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Report of 0 evaluated model(s)" in result.stdout
    assert (
        "no evaluated model with provenance"
        in (tmp_path / "outputs/report/latest/report.md").read_text()
    )

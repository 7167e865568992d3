"""``autoprune groups --latency-steps``: measured per-group rounding, reported and written as a space that
``load_space`` (what ``autoprune search --space`` calls) accepts. Timings are tiny and not asserted on."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from autoprune.engine.structure import ModelStructure
from autoprune.models import build_model
from autoprune.report_schema import schema_problems
from autoprune.search_spaces import load_space

from .conftest import Invoke

FAST = ("--threads", "1", "--device", "cpu")  # groups has no progress bars


def test_latency_steps_are_reported_and_written_as_a_space(run_ok: Invoke, tmp_path: Path) -> None:
    space_file = tmp_path / "spaces" / "measured.yaml"
    result = run_ok(["groups", "--model", "resnet20", "--latency-steps", "--batch", "2", "--rounds", "2",
                     "--steps", "8,16", "--round-to", "4", "--write-space", str(space_file),
                     "--out", str(tmp_path / "run"), *FAST])  # fmt: skip
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert schema_problems(report) == []
    steps = report["latency_steps"]
    assert steps["batch_size"] == 2 and steps["form"] == "deploy" and steps["threads"] == 1
    assert steps["space_file"] == str(space_file) and "interleaved" in steps["protocol"]
    picked = {g["name"]: g["round_to"] for g in steps["groups"]}
    assert len(picked) == 12  # the bundled resnet20 space's groups
    for g in steps["groups"]:
        assert g["round_to"] == (g["step"] or 4) and len(g["ratios"]) == len(g["counts"])
    assert "space with the measured rounding" in result.stdout
    data = yaml.safe_load(space_file.read_text())
    assert data["model"] == "resnet20" and data["round_to"] == 4
    assert {name: g["round_to"] for name, g in data["groups"].items()} == picked
    structure = ModelStructure(build_model("resnet20", num_classes=10, in_channels=1), (1, 1, 8, 8))
    space = load_space(space_file, structure, model="resnet20")
    for g in space.groups:
        assert all(c % picked[g.name] == 0 or c == g.channels for c in g.choices)


def test_write_space_needs_latency_steps(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(["groups", "--write-space", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "run"), *FAST])
    assert result.exit_code == 2
    assert "--write-space needs --latency-steps" in result.output
    assert not (tmp_path / "s.yaml").exists()

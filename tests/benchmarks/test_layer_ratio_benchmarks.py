"""The issue-16 benchmarks' --quick modes run end to end on digits (real commands, tiny budgets)."""

from __future__ import annotations

import importlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import kendalltau

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(BENCH / script), "--quick", "--threads", "1", *args], check=True,
                   capture_output=True, text=True, timeout=600)


def _bench_module(name: str) -> Any:
    """A script of benchmarks/ (e.g. supernet_fidelity.py) as a module: the benchmarks are scripts, not a package."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_layer_ratios_then_fidelity_quick(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "results"
    _run("layer_ratios.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--targets", "0.3")
    result = json.loads((out / "layer_ratios_resnet20.json").read_text())
    row = result["targets"]["0.3"]
    assert set(row["searches"]) == {"0", "1"} and set(row["baselines"]) == {"uniform-l1+ft", "global-l1+ft"}
    for run in row["searches"].values():  # each search's winner is scored against the same uniform candidate
        assert run["macs_ratio"] <= 0.3 + 1e-9
        assert run["winner_minus_uniform_test"] == pytest.approx(run["winner"]["accuracy"] - run["uniform"]["accuracy"])
        if run["holdout"] is not None and not run["holdout"]["kept"]:  # the hold-out returned the uniform candidate
            assert run["exported"] == "uniform" and run["winner_minus_uniform_test"] == 0.0
    assert sorted(p.name for p in work.glob("search-*") if p.is_dir()) == ["search-h0.3-0.3-s0", "search-h0.3-0.3-s1"]
    for run in row["searches"].values():  # the same difference, paired per test sample (the search reports it)
        assert run["vs_uniform_test"]["difference"] == pytest.approx(run["winner_minus_uniform_test"])
    # benchmarks/paired_test.py rebuilds both models of a run whose report predates `vs_uniform_test`: the
    # re-scoring's calibration depends on the seed only, so the uniform candidate is rebuilt exactly
    old = tmp_path / "old-search"
    shutil.copytree(work / "search-h0.3-0.3-s0", old)
    report = json.loads((old / "report.json").read_text())
    given = report.pop("vs_uniform_test")
    (old / "report.json").write_text(json.dumps(report))
    subprocess.run([sys.executable, str(BENCH / "paired_test.py"), str(old), "--threads", "1"], check=True,
                   cwd=BENCH.parent, capture_output=True, timeout=600)
    rebuilt = json.loads((old / "vs_uniform_test.json").read_text())
    assert rebuilt["exact"] is True and rebuilt["uniform_test_rebuilt"] == report["uniform"]["accuracy"]
    assert (rebuilt["difference"], rebuilt["se"]) == pytest.approx((given["difference"], given["se"]))
    mean, _ = row["winner_minus_uniform_test"]
    assert mean == pytest.approx(sum(r["winner_minus_uniform_test"] for r in row["searches"].values()) / 2)
    checks = result["convergence"]  # each failed check extends the dense training; the last base is pruned
    assert 1 <= len(checks) <= 2 and all(c["extra_epochs"] == 1 for c in checks)
    assert result["dense"]["epochs"] == 2 + sum(1 for c in checks[:-1])
    assert json.loads((work / "base.json").read_text())["epochs"] == result["dense"]["epochs"]
    # a second run reads the finished stages instead of redoing them
    stamp = (work / "dense" / "report.json").stat().st_mtime_ns
    _run("layer_ratios.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--targets", "0.3")
    assert (work / "dense" / "report.json").stat().st_mtime_ns == stamp
    assert all(b["precision"] == "fp32" for b in row["baselines"].values())
    # --only-finished starts nothing: it reports what is done and names what is not
    folders = sorted(p.name for p in work.iterdir())
    _run("layer_ratios.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--targets", "0.2",
         "--only-finished")  # (--quick keeps the first target only)
    assert sorted(p.name for p in work.iterdir()) == folders
    partial = json.loads((out / "layer_ratios_resnet20.json").read_text())
    assert partial["dense"]["accuracy"] == result["dense"]["accuracy"]
    assert "--only-finished" not in partial["command"]  # the command that produces the result, not the re-read
    assert partial["missing"] == ["search-h0.3-0.2-s0", "search-h0.3-0.2-s1", "l1-local-0.2", "l1-global-0.2"]
    assert "Not finished yet" in (out / "layer_ratios_resnet20.md").read_text()

    # the supernet continued near the budget (a stage of its own), searched over by --supernet-stage
    subprocess.run([sys.executable, "-m", "autoprune", "supernet", "--model", "resnet20", "--init-supernet",
                    str(work / "supernet" / "supernet.pt"), "--supernet-epochs", "1", "--sample-near", "0.25:0.35",
                    "--lr", "0.005", "--target-macs", "0.3", "--out", str(work / "near"), "--no-progress",
                    "--threads", "1"], check=True, cwd=BENCH.parent, capture_output=True)
    _run("layer_ratios.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--targets", "0.3",
         "--supernet-stage", "near")
    near = json.loads((out / "layer_ratios_resnet20_near.json").read_text())
    assert [(c["stage"], c["epochs"], c["sample_near"]) for c in near["supernet"]["continued"]] == [
        ("near", 1, [0.25, 0.35])]
    assert set(near["targets"]["0.3"]["searches"]) == {"0", "1"}
    assert sorted(p.name for p in work.glob("near-search-*") if p.is_dir()) == ["near-search-h0.3-0.3-s0",
                                                                                "near-search-h0.3-0.3-s1"]
    for seed in ("0", "1"):
        rep = json.loads((work / f"near-search-h0.3-0.3-s{seed}" / "report.json").read_text())
        assert rep["config"]["cli"]["supernet"] == str(work / "near" / "supernet.pt")
    assert json.loads((out / "layer_ratios_resnet20.json").read_text())["dense"] == result["dense"]  # not replaced
    assert "then continued (stage `near`) for 1 more" in (out / "layer_ratios_resnet20_near.md").read_text()

    _run("supernet_fidelity.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--target", "0.3",
         "--also", f"same={work / 'supernet' / 'supernet.pt'}", "--also-calibration", "val:4", "train:4",
         "--also-finetune", "supernet:2")
    fidelity = json.loads((out / "fidelity_resnet20_0.3.json").read_text())
    names = [r["name"] for r in fidelity["rows"]]
    named = names + [n for r in fidelity["rows"] for n in r.get("same_as", [])]  # a structure counts once
    # the searches ran with the command's default hold-out (stages search-h0.3-...): their judged candidates
    assert names[0] == "uniform" and {"winner-h0.3-s0", "winner-h0.3-s1"} <= set(named) and len(named) == 6 + 2
    assert len({json.dumps(sorted(r["counts"].items())) for r in fidelity["rows"]}) == len(names)
    assert all(r["macs_ratio"] <= 0.3 + 1e-9 for r in fidelity["rows"])
    for key in ("supernet_vs_truth", "cut_vs_truth"):
        lo, hi = fidelity[key]["kendall_tau_ci95"]
        assert -1.0 <= lo <= hi <= 1.0 and fidelity[key]["n"] == len(names)
    # another supernet scored on the same candidates (here the same file: the same ranking)
    assert fidelity["same_vs_truth"]["kendall_tau"] == fidelity["supernet_vs_truth"]["kendall_tau"]
    # the same supernet with another calibration: val:4 is the main score's own (--quick: 4 batches from val)
    # and reproduces it; train:4 is the search's re-scoring calibration, a different reading
    assert fidelity["also"] == ["same", "calib-val-4", "calib-train-4", "ft-supernet-2"]
    assert all(r["calib-val-4_val"] == r["supernet_val"] for r in fidelity["rows"])
    assert any(r["calib-train-4_val"] != r["supernet_val"] for r in fidelity["rows"])
    assert (work / "fidelity-0.3-calib-train-4.jsonl").exists()
    assert "from the train split (`calib-train-4`)" in (out / "fidelity_resnet20_0.3.md").read_text()
    # the shared weights finetuned 2 steps before the score: another reading, logged to resume from
    assert any(r["ft-supernet-2_val"] != r["supernet_val"] for r in fidelity["rows"])
    assert len((work / "fidelity-0.3-ft-supernet-2.jsonl").read_text().splitlines()) == len(named)
    assert "+ 2 finetune steps, then scored (`ft-supernet-2`)" in (out / "fidelity_resnet20_0.3.md").read_text()
    bad = subprocess.run([sys.executable, str(BENCH / "supernet_fidelity.py"), "--model", "resnet20", "--work",
                          str(work), "--out", str(out), "--quick", "--also-calibration", "test:4"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--also-calibration: 'test:4'" in bad.stderr
    bad = subprocess.run([sys.executable, str(BENCH / "supernet_fidelity.py"), "--model", "resnet20", "--work",
                          str(work), "--out", str(out), "--quick", "--also-finetune", "dense:4"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--also-finetune: 'dense:4'" in bad.stderr
    # the noise reference: the finetuned models' validation accuracy ranked against their test accuracy
    rows = fidelity["rows"]
    assert fidelity["noise_reference"]["kendall_tau"] == pytest.approx(
        kendalltau([r["truth_val"] for r in rows], [r["truth_test"] for r in rows]).statistic, nan_ok=True)

    # the headroom: the best ground truth minus the uniform candidate's (what a perfect ranking could gain)
    truth = {r["name"]: r["truth_test"] for r in rows}
    assert fidelity["headroom"]["best_minus_uniform"] == pytest.approx(max(truth.values()) - truth["uniform"])
    assert fidelity["headroom"]["above_uniform"] == sum(v > truth["uniform"] for v in truth.values())
    assert fidelity["gains_over_uniform"] == supernet_fidelity_gains(rows)
    # --rerender rewrites the page from the JSON alone; --replicates 2 finetunes uniform and the searches'
    # candidates once more each (and nothing else), their ground truth the mean of the two
    page = (out / "fidelity_resnet20_0.3.md").read_text()
    (out / "fidelity_resnet20_0.3.md").unlink()
    _run("supernet_fidelity.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--target", "0.3",
         "--rerender")
    assert (out / "fidelity_resnet20_0.3.md").read_text() == page
    _run("supernet_fidelity.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--target", "0.3",
         "--replicates", "2")
    again = {r["name"]: r for r in json.loads((out / "fidelity_resnet20_0.3.json").read_text())["rows"]}
    for name, row in again.items():
        compared = name == "uniform" or any(n.startswith("winner-") for n in [name, *row.get("same_as", [])])
        assert len(row.get("truth_test_replicates", [row["truth_test"]])) == (2 if compared else 1), name
    assert again["uniform"]["truth_test_replicates"][0] == truth["uniform"]
    logged = (work / "fidelity-0.3.jsonl").read_text().splitlines()
    assert len(logged) == len(rows) + sum(1 for n, r in again.items() if "truth_test_replicates" in r)

    # the sampling pipeline screened by a short finetune, then finetuned as long as the L1 baselines (--quick: 1
    # epoch), against those baselines from the same work folder
    _run("sampling_route.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--target", "0.3")
    route = json.loads((out / "sampling_route_resnet20_0.3.json").read_text())
    assert set(route["runs"]) == {"0"} and set(route["baselines"]) == {"uniform-l1+ft", "global-l1+ft"}
    sampled = json.loads((work / "sample-3-2-0.3-s0" / "report.json").read_text())
    assert sampled["config"]["sampling"]["final_epochs"] == 1 and sampled["config"]["sampling"]["top_k"] == 3
    assert all(c["finetuned_val_accuracy"] is not None for c in sampled["sampling"]["top_k"])  # all screened
    run = route["runs"]["0"]
    assert run["accuracy"] == sampled["pruned"]["accuracy"] and run["macs_ratio"] <= 0.3 + 1e-9
    base = json.loads((work / "l1-local-0.3" / "report.json").read_text())["pruned"]["accuracy"]
    assert route["baselines"]["uniform-l1+ft"]["seeds"]["0"]["accuracy"] == base  # layer_ratios.py's seed-0 stage
    assert route["summary"]["minus_uniform-l1+ft"][0] == pytest.approx(run["accuracy"] - base)
    assert "Returned − uniform-l1+ft" in (out / "sampling_route_resnet20_0.3.md").read_text()

    # RL against random at equal cost over the same supernet: every search gets the same trials
    _run("rl_equal_cost.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--target", "0.3",
         "--searchers", "ddpg", "random", "--seeds", "0")
    rl = json.loads((out / "rl_equal_cost_resnet20_0.3.json").read_text())
    assert set(rl["runs"]) == {"ddpg", "random"} and all(set(r) == {"0"} for r in rl["runs"].values())
    assert {r["trials"] for by_seed in rl["runs"].values() for r in by_seed.values()} == {4}
    ddpg, rand = rl["runs"]["ddpg"], rl["runs"]["random"]
    mean, _ = rl["summary"]["ddpg"]["minus_random_test"]
    assert mean == pytest.approx(ddpg["0"]["winner"]["accuracy"] - rand["0"]["winner"]["accuracy"])

    # one budget-conditioned policy answers every budget, beside uniform and a per-budget TPE search
    _run("policy_front.py", "--model", "resnet20", "--work", str(work), "--out", str(out), "--targets", "0.45")
    front = json.loads((out / "policy_front_resnet20.json").read_text())
    assert set(front["targets"]) == {"0.45"} and front["policy"]["episodes"] == 6
    for t, row in front["targets"].items():
        assert row["policy"]["macs_ratio"] <= float(t) + 1e-9 and row["tpe"]["macs_ratio"] <= float(t) + 1e-9
        assert row["policy"]["returned"] in ("uniform", "policy", "search")


def supernet_fidelity_gains(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return json.loads(json.dumps(_bench_module("supernet_fidelity").gains_over_uniform(rows)))


def test_fidelity_gains_over_uniform_by_kind_of_candidate_by_hand() -> None:
    rows = [{"name": "uniform", "truth_test": 0.90, "truth_test_se": 0.003},
            {"name": "random-1", "truth_test": 0.91, "truth_test_se": 0.003},
            {"name": "random-2", "truth_test": 0.93, "truth_test_se": 0.003},
            {"name": "winner-s0", "truth_test": 0.89, "truth_test_se": 0.003, "same_as": ["random-3"]},
            {"name": "starve-first", "truth_test": 0.80, "truth_test_se": 0.003}]
    gains = _bench_module("supernet_fidelity").gains_over_uniform(rows)
    # random: 0.91, 0.93 and (under another name) 0.89 -> mean 0.91, +0.01 over uniform; SD 0.02 over 3
    assert gains["random"]["n"] == 3 and gains["random"]["mean_minus_uniform"] == pytest.approx(0.01)
    assert gains["random"]["se"] == pytest.approx(math.sqrt(0.02**2 / 3 + 0.003**2))
    assert "winner" not in gains  # one winner: no spread to estimate an SE from


def test_fidelity_spread_of_each_score_by_hand() -> None:
    rows = [{"name": "uniform", "supernet_val": 0.90, "near_val": 0.92, "truth_test": 0.90},
            {"name": "random-1", "supernet_val": 0.92, "near_val": 0.92, "truth_test": 0.94},
            {"name": "random-2", "supernet_val": 0.94, "near_val": 0.92, "truth_test": 0.86}]
    out = _bench_module("supernet_fidelity").spreads(rows, ["supernet", "near", "cut"])
    # supernet: 0.90, 0.92, 0.94 -> SD 0.02, best - uniform 0.04; near: all equal; truth: SD 0.04, +0.04
    assert out["supernet_val"] == pytest.approx({"std": 0.02, "best_minus_uniform": 0.04})
    assert out["near_val"] == pytest.approx({"std": 0.0, "best_minus_uniform": 0.0})
    assert out["truth_test"] == pytest.approx({"std": 0.04, "best_minus_uniform": 0.04})
    assert "cut_val" not in out  # no such score in the rows


def test_fidelity_merges_a_structure_finetuned_twice_into_the_mean_of_its_ground_truths() -> None:
    supernet_fidelity = _bench_module("supernet_fidelity")
    row = {"counts": {"a": 4, "b": 8}, "ft_epochs": 2, "supernet_val": 0.9}
    logged = [{**row, "name": "uniform", "truth_test": 0.93, "truth_val": 0.94},
              {**row, "name": "starve-last", "truth_test": 0.92, "truth_val": 0.95},
              {**row, "counts": {"a": 8, "b": 4}, "name": "random-1", "truth_test": 0.91, "truth_val": 0.90}]
    merged = supernet_fidelity.merge_replicates(logged)
    assert len(merged) == 2  # one row per structure
    twice = next(r for r in merged.values() if r["counts"] == {"a": 4, "b": 8})
    assert twice["truth_test"] == pytest.approx(0.925) and twice["truth_val"] == pytest.approx(0.945)
    assert twice["truth_test_replicates"] == [0.93, 0.92] and twice["name"] == "uniform"
    once = next(r for r in merged.values() if r["counts"] == {"a": 8, "b": 4})
    assert once["truth_test"] == 0.91 and "truth_test_replicates" not in once


def test_fidelity_counts_a_structure_found_under_two_names_once() -> None:
    supernet_fidelity = _bench_module("supernet_fidelity")
    pool = {"uniform": {"a": 4}, "random-1": {"a": 8}, "winner-s0": {"a": 8}, "winner-h0.3-s0": {"a": 8},
            "winner-s1": {"a": 2}}
    done = {n: {"name": n, "counts": c, "truth_test": 0.9} for n, c in pool.items() if n != "winner-s1"}
    rows = supernet_fidelity.distinct_rows(pool, done)
    assert [r["name"] for r in rows] == ["uniform", "random-1"]  # winner-s1 not finished yet
    assert rows[1]["same_as"] == ["winner-s0", "winner-h0.3-s0"] and "same_as" not in rows[0]


def test_fidelity_finetunes_uniform_and_winners_first_but_keeps_each_candidates_seed() -> None:
    supernet_fidelity = _bench_module("supernet_fidelity")
    names = ["uniform", "starve-first", "starve-last", "random-3", "random-4", "winner-s0", "winner-h0.3-s1"]
    pool = {name: {"a": k} for k, name in enumerate(names)}
    order = supernet_fidelity.evaluation_order(pool)
    assert [n for _, n in order] == ["uniform", "winner-s0", "winner-h0.3-s1", "starve-first", "starve-last",
                                     "random-3", "random-4"]
    assert all(names[i] == n for i, n in order)  # the pool index (the finetuning seed) travels with the name


def test_sampling_route_subtracts_the_baselines_mean_over_seeds_with_both_spreads_by_hand() -> None:
    route = _bench_module("sampling_route")
    runs = {s: {"accuracy": a, "screen_best_minus_uniform_val": 0.03} for s, a in (("0", 0.93), ("1", 0.94))}
    two = {"seeds": {"0": {"accuracy": 0.92}, "1": {"accuracy": 0.90}}}
    one = {"seeds": {"0": {"accuracy": 0.92}}}
    sm = route.summarize(runs, {"two": two, "one": one})
    # runs: mean 0.935, SD 0.00707, SE 0.005; two-seed baseline: mean 0.91, SD 0.01414, SE 0.01
    assert sm["minus_two"][0] == pytest.approx(0.025) and sm["minus_two"][1] == pytest.approx(math.hypot(0.005, 0.01))
    assert sm["minus_one"][0] == pytest.approx(0.015) and sm["minus_one"][1] == pytest.approx(0.005)
    assert sm["two"][0] == pytest.approx(0.91) and sm["two"][1] == pytest.approx(0.01)


def _supernet_report(folder: Path, history: dict[str, list[float]] | None = None, **cli: Any) -> None:
    folder.mkdir(parents=True)
    report = {"wall_time_s": 100.0, "config": {"supernet": {"epochs": 10, "lr": 0.02, "num_random": 2},
                                               "sample_near": None, "cli": {"precision": "bf16", **cli}},
              "history": history or {}}
    (folder / "report.json").write_text(json.dumps(report))


def test_layer_ratios_takes_a_supernet_trained_from_the_same_dense_model_as_its_own_stage(tmp_path: Path) -> None:
    layer_ratios = _bench_module("layer_ratios")
    dense = str(tmp_path / "dense-check2" / "model.pt")
    _supernet_report(tmp_path / "supernet-e10", checkpoint=dense)
    _supernet_report(tmp_path / "supernet-other", checkpoint=str(tmp_path / "dense" / "model.pt"))
    _supernet_report(tmp_path / "supernet-near", init_supernet=str(tmp_path / "supernet" / "supernet.pt"))
    own = layer_ratios._sibling(tmp_path, "supernet-e10", dense)
    # no per-epoch times recorded (an older run): the wall time of its last run, said to be only that
    assert own == {"stage": "supernet-e10", "epochs": 10, "seconds": 100.0, "seconds_partial": True, "lr": 0.02,
                   "args": "", "passes_per_step": 4, "precision": "bf16"}
    # every epoch's time recorded (kept across resumed runs): their sum, the whole training's
    _supernet_report(tmp_path / "supernet-timed", checkpoint=dense,
                     history={"largest_loss": [0.3, 0.2], "epoch_seconds": [400.0, 450.0]})
    timed = layer_ratios._sibling(tmp_path, "supernet-timed", dense)
    assert timed is not None and timed["seconds"] == 850.0 and timed["seconds_partial"] is False
    assert layer_ratios._sibling(tmp_path, "supernet-near", dense) is None  # a continued stage: _continued's job
    assert layer_ratios._sibling(tmp_path, "missing", dense) is None
    with pytest.raises(SystemExit, match="not from the dense model every row prunes"):
        layer_ratios._sibling(tmp_path, "supernet-other", dense)
    text = layer_ratios.render({"settings": {"model": "resnet56", "dataset": "fashion-mnist", "trials": 40,
                                             "seeds": [0], "finetune_epochs": 6}, "supernet": own,
                                "command": "python benchmarks/layer_ratios.py", "machine": "x", "cpus": 2})
    assert "Supernet (stage `supernet-e10`, from the dense model, lr 0.02): 10 sandwich epochs × 4" in text
    assert "(100 s, the wall time of the run that finished it)" in text

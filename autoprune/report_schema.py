"""The fields of ``report.json``, every command's, in one place (rendered to ``docs/report_schema.md``).

Each field says which commands may write it and which always do. :func:`schema_problems` checks a report
against this table; a test runs every command and checks its report, so a field cannot be added, renamed
or dropped without this table (and the rendered page) saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 2

ALL = ("train", "prune", "groups", "search", "supernet", "extract", "sample", "sensitivity")
EXPORTS = ("prune", "search", "extract", "sample")  # commands that export a pruned model

#: What changed between versions (readers of an older version can map its fields).
CHANGES = {
    2: "`finetuned` is a boolean in every exporting command (search's metrics of a finetuned copy moved to "
    "`finetuned_metrics`; `finetuned_winner` dropped); `config.cli` holds every command-line option; "
    "`num_classes`, `in_channels` and `image_size` added; search's `dense` has `val_accuracy`. Added since, "
    "without a version change: `onnx_error` and the status `onnx_check_failed`; `latency`, `onnxruntime` and "
    "`latency_check` (issue 18: one interleaved timing protocol); search's `holdout` and `vs_uniform.on` (the winner "
    "judged on validation samples the search never read); sample's `resumed`; search's `vs_uniform_test` (the "
    "exported model against the uniform candidate on test, paired per sample).",
}

METRICS_DOC = (
    "Metrics objects (`dense`, `pruned`, `uniform`, `finetuned_metrics`): `accuracy` (test top-1, 0..1), "
    "`top5`, `accuracy_se` (its standard error) and `test_samples` where a test split was read; `val_accuracy` "
    "where a validation score was measured; `macs` (multiply-accumulates per sample), `params`, `latency_ms` "
    "(median forward time at `latency_batch_size` with `latency_threads`), `deploy_latency_ms` (the same in the "
    "deploy form: BatchNorm folded, channels-last; where `latency` is present, `dense` and `pruned` take both "
    "from its first run, so their ratio comes from one interleaved run); mask granularities add `effective_macs` and "
    "`nonzero_params`. A supernet whose dense weights are unknown gives `dense` with `macs` and `params` only. "
    "`search` and `extract` give `dense.recalibrated` (`accuracy`, `accuracy_se`, `bn_batches`): the dense model "
    "scored the way the sub-networks are, with adaptive BatchNorm on the same calibration batches (its own "
    "running statistics can be stale)."
)


@dataclass(frozen=True)
class Field:
    """One top-level field: what it holds, which commands may write it, which always do."""

    doc: str
    commands: tuple[str, ...] = ALL
    always: tuple[str, ...] = ()


def _f(doc: str, commands: tuple[str, ...] = ALL, always: tuple[str, ...] | bool = False) -> Field:
    return Field(doc, commands, commands if always is True else () if always is False else always)


FIELDS: dict[str, Field] = {
    "schema_version": _f(f"integer, {SCHEMA_VERSION}; later versions list their changes (below)", always=True),
    "command": _f("the command that ran", always=True),
    "model": _f("model name as given (`resnet20`, `torchvision:resnet18`, `file.py:fn`)", always=True),
    "dataset": _f("dataset name (`digits`, `fashion-mnist`, ...)", always=True),
    "num_classes": _f("classes of the dataset (what `build_model` needs to rebuild the model)", always=True),
    "in_channels": _f("input channels of the dataset", always=True),
    "image_size": _f("[height, width] of the inputs", always=True),
    "seed": _f("the run's seed", always=True),
    "wall_time_s": _f("seconds from start to the end of the command", always=True),
    "status": _f('`"ok"`, or `"onnx_check_failed"` (see `onnx_error`); any other failure writes no report and '
                 "exits non-zero", always=True),
    "config": _f("the settings of the run: `cli` holds every command-line option as given (and the one "
                 "budget: `budget`, `target`); the other keys are the command's resolved settings", always=True),
    "environment": _f("library versions, torch threads, device, platform", always=True),
    "files": _f("run-folder-relative paths of the files written (checkpoint, plan, weights, onnx, figures; "
                "`search --target-range`: `policy` and `policy_meta`, the saved agent and its sidecar)", always=True),
    "dense": _f("metrics of the unpruned model (see metrics objects)", always=True),
    "pruned": _f("metrics of the exported pruned model", EXPORTS, True),
    "macs_ratio": _f("pruned MACs / dense MACs", EXPORTS, True),
    "params_ratio": _f("pruned params / dense params", EXPORTS, True),
    "latency_ratio": _f("pruned latency / dense latency (same batch, threads, device; from one interleaved run "
                        "where `latency` is present)", EXPORTS),
    "deploy_latency_ratio": _f("the same in the deploy form", EXPORTS),
    "latency": _f("dense and pruned timed together by the interleaved protocol (each model once per round, the "
                  "order rotated every round, after warm-up): `protocol`, `warmup`, `threads`, `device`, and per "
                  "form (`eager`, `deploy`) one entry per batch size (1 and the throughput batch 64), each one "
                  "interleaved run: `batch_size`, `rounds`, `dense` and `pruned` (`median_ms`, `q1_ms`, `q3_ms`, "
                  "`iqr_ms` over rounds; `dense` only where the dense model was given; `search` also times its "
                  "`uniform` candidate in the same runs, and the `uniform` metrics take its medians) and `ratio` "
                  "(pruned / dense per round: `median`, `q1`, `q3`, `iqr`, `noise` = iqr / 2, `rounds`)", EXPORTS),
    "onnxruntime": _f("the exported model.onnx timed in ONNX Runtime (CPU, the same threads) in the same runs as "
                      "`latency`: `providers`, `threads`, `dense` (whether the dense model, exported to a temporary "
                      "file, was timed beside it) and `runs` (per batch size as in `latency`)", EXPORTS),
    "latency_check": _f("`search` with a latency budget: the top candidates re-measured (interleaved with the dense "
                        "model, in the latency table's form, batch and threads) before the winner was fixed: "
                        "`target`, the winner's `measured_ratio` (from `confirmations`: the winner timed again alone "
                        "with the dense model, twice the rounds; its first measurement is `first_ratio`), "
                        "`predicted_ratio`, `noise` and `margin` (target - measured), `meets_target`, `remeasured`, "
                        "`dropped` (measured over target + noise, not eligible), `winner_trial`, every timed "
                        "`candidates` entry and every `confirmations` run (the next best is confirmed when one "
                        "measures over the target)", ("search",)),
    "keep_ratios": _f("kept fraction of each group's channels", EXPORTS, True),
    "counts": _f("kept channels of each searched group", ("search", "extract", "sample"), True),
    "finetuned": _f("whether the exported model was finetuned after pruning (boolean)", EXPORTS, True),
    "onnx_max_abs_diff": _f("largest |ONNX Runtime - PyTorch| output difference of model.onnx", EXPORTS),
    "onnx_error": _f("why the ONNX check failed (then model.onnx is removed, `status` is `onnx_check_failed` and "
                     "the command exits 2 after writing everything else)", EXPORTS),
    "training": _f("dense training run by this command: `config` and `history` (loss, accuracy per epoch)",
                   ("train", "prune", "sample", "sensitivity", "supernet"), ("train",)),
    "granularity": _f("`prune`: channel, kernel, vector or fine", ("prune",), True),
    "rounds": _f("`prune`: per round, the target (null for explicit keep ratios) and val accuracy after pruning "
                 "and after finetuning", ("prune",), True),
    "effective_macs_ratio": _f("`prune` with masks: MACs of the non-zero weights / dense MACs", ("prune",)),
    "note": _f("`prune` with masks: why masks do not speed up dense kernels", ("prune",)),
    "space": _f("the search space: groups, choices, metric, target, round_to",
                ("search", "supernet", "sample", "sensitivity"), True),
    "winner": _f("`search`: how the exported candidate was fixed on validation data: `source` (search or "
                 "uniform), trial, val accuracy +- SE, loss, MACs", ("search",), True),
    "rescored": _f("`search`: every re-scored candidate (top-k trials and the uniform one), best first",
                   ("search",), True),
    "uniform_rescored": _f("`search`: the uniform candidate re-scored the same way", ("search",), True),
    "vs_uniform": _f("`search`: exported candidate minus uniform val accuracy (paired) with its SE, `beats_uniform` "
                     "(by more than 2 SE), `on` (`holdout`: measured on the hold-out, else on the validation the "
                     "winner was chosen on) and a one-line `statement`", ("search",), True),
    "vs_uniform_test": _f("`search`: exported model minus uniform candidate on the test split, paired per sample: "
                          "`difference` +- `se`, `samples`, a one-line `statement` (reported only: the test split "
                          "never chooses)", ("search",)),
    "holdout": _f("`search`: the re-scoring's winner against the uniform candidate on the validation samples set "
                  "aside before the search (`--holdout`): `samples`, both accuracies, `difference` +- `se`, the "
                  "same on the samples it was chosen on (`selection_difference`), `kept` (else the uniform "
                  "candidate is exported); null without a hold-out or when the uniform candidate won the re-scoring",
                  ("search",), True),
    "uniform": _f("`search`: test metrics of the uniform candidate (read after the winner is fixed)",
                  ("search",), True),
    "budget_use": _f("`search`: `cost`, `used` (cost / target) and `saturated` of the winner; the "
                     "distribution of `used` over every evaluated candidate", ("search",), True),
    "reference": _f("reference candidates scored like the trials (uniform at the budget, ...)", ("search", "sample"),
                    True),
    "search": _f("`search`: trials, best trial, Pareto front, timing", ("search",), True),
    "policy": _f("`search --target-range`: the saved budget-conditioned agent (`file`, `searcher`, `metric`, "
                 "`target_range`, space `fingerprint`, `episodes`, `model`); `search --policy`: the same for the "
                 "policy that answered, with the `target`, its deterministic `answer` (counts) and which candidate "
                 "was `exported` (`search`: the answer, or `uniform` when that scored better on validation)",
                 ("search",)),
    "searcher_state": _f("`search`: what the searcher reports of itself (sampler, agent, ...)", ("search",), True),
    "evaluator": _f("evaluations, cache hits, pruned trials, seconds", ("search", "supernet"), True),
    "finetuned_metrics": _f("`search --finetune-epochs N`: metrics of a finetuned copy of the winner (the export "
                            "stays the unfinetuned winner)", ("search",)),
    "finetune_epochs": _f("`search --finetune-epochs N`: N", ("search",)),
    "sampling": _f("`sample`: candidates, their adaptive-BN scores, the finetuned top k and correlations",
                   ("sample",), True),
    "resumed": _f("`sample`: whether the run continued a stopped one in the same folder (kept candidates, "
                  "finetunings and epochs were read back; `wall_time_s` counts the continuation only)",
                  ("sample",), True),
    "lower_bounds": _f("`sensitivity`: `max_drop` and per-group `keep_ratio` lower bounds", ("sensitivity",), True),
    "seed_ratios": _f("`sensitivity`: sensitivity-guided seed candidates at the budget", ("sensitivity",), True),
    "history": _f("`supernet`: loss and training seconds per epoch of the sandwich training (kept across resumes)",
                  ("supernet",), True),
    "subnets": _f("`supernet`: largest, smallest and uniform-at-target sub-networks scored", ("supernet",), True),
    "distributed": _f("`supernet` under torchrun: world size and backend", ("supernet",)),
    "supernet": _f("`extract`: the supernet file the sub-network came from", ("extract",), True),
    "groups": _f("`groups`: name, channels, MACs and members of every prunable group", ("groups",), True),
    "output_layers": _f("`groups`: layers never pruned (the model's outputs)", ("groups",), True),
    "unsupported_layers": _f("`groups`: layers whose channels are left out, and why", ("groups",), True),
    "latency_steps": _f("`groups --latency-steps`: per measured group the kept `counts` timed, their latency `ratios` "
                        "to the widest (one interleaved run per group), the `noise` of a ratio, the `step` found (or "
                        "the `reason` there is none) and the `round_to` picked; the conditions (`batch_size`, `form`, "
                        "`scope`, `threads`, `rounds`, `protocol`) and the `space_file` written", ("groups",)),
}


def schema_problems(report: Mapping[str, Any]) -> list[str]:
    """What in ``report`` disagrees with :data:`FIELDS` (undocumented or missing fields); empty if nothing."""
    command = report.get("command")
    if command not in ALL:
        return [f"unknown command {command!r}"]
    problems = [f"{command}: field {k!r} is not documented for this command"
                for k in report if k not in FIELDS or command not in FIELDS[k].commands]
    problems += [f"{command}: field {k!r} is missing" for k, f in FIELDS.items() if command in f.always and
                 k not in report]  # fmt: skip
    if report.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"schema_version {report.get('schema_version')!r} is not {SCHEMA_VERSION}")
    if "finetuned" in report and not isinstance(report["finetuned"], bool):
        problems.append("finetuned must be a boolean")
    config = report.get("config")
    if not isinstance(config, Mapping) or not isinstance(config.get("cli"), Mapping):
        problems.append("config.cli (every command-line option) is missing")
    return problems


def schema_markdown() -> str:
    """The table above as Markdown (``docs/report_schema.md``)."""
    lines = [
        "# `report.json`",
        "",
        "Every command writes `report.json` in its run folder. This page is generated from "
        "`autoprune/report_schema.py` (a test keeps the two equal, and checks every command's report against it).",
        "",
        "| field | commands (* always) | meaning |",
        "| --- | --- | --- |",
    ]
    for name, f in FIELDS.items():
        who = "all" if f.commands == ALL and f.always == ALL else ", ".join(
            c + ("*" if c in f.always else "") for c in f.commands)
        lines.append(f"| `{name}` | {who} | {f.doc} |")
    lines += ["", METRICS_DOC, "", "## Changes", ""]
    lines += [f"- version {v}: {text}" for v, text in sorted(CHANGES.items())]
    return "\n".join(lines) + "\n"

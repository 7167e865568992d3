"""``autoprune groups``: the prunable channel groups of a model and, with ``--latency-steps``, each group's
measured latency steps and the channel rounding they suggest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from autoprune.cli import options as opt
from autoprune.cli.app import app, out_console
from autoprune.cli.common import Setup, at_least, console, start, user_errors
from autoprune.defaults import DEFAULT_ROUND_TO
from autoprune.errors import AutoPruneError

Space = opt.Space

StepsOption = Annotated[
    bool,
    typer.Option("--latency-steps", metavar="",
                 help="Also time every group at a few kept counts (the others whole) and pick its channel rounding "
                      "from the latency steps found (the largest of --steps at which latency is a staircase, else "
                      "--round-to). Cost: per group ~8 counts x (--rounds + 2) passes of its layers at --batch, one "
                      "interleaved run each: ResNet-20 at batch 128 about 15 s on 2 CPU cores (--steps-scope model: "
                      "whole forward passes, ~10x longer)."),
]


@app.command("groups")
@user_errors
@opt.run_options(without=("download", "checkpoint", "progress", "precision"))
def groups_cmd(
    run: opt.RunOptions,
    latency_steps: StepsOption = False,
    batch: Annotated[int, typer.Option("--batch", help="--latency-steps: batch size of the timed passes.")] = 128,
    steps: Annotated[str, typer.Option("--steps", help="--latency-steps: candidate roundings, e.g. 8,16,32.")] = "8,16",
    spacing: Annotated[
        int, typer.Option("--spacing", help="--latency-steps: spacing of the kept counts timed (below the steps).")
    ] = 4,
    rounds: Annotated[int, typer.Option("--rounds", help="--latency-steps: timed rounds per group.")] = 10,
    steps_scope: Annotated[
        str, typer.Option("--steps-scope", help="--latency-steps: time the group's 'layers' or the whole 'model'.")
    ] = "layers",
    form: Annotated[
        str, typer.Option("--form", help="--latency-steps: 'deploy' (BatchNorm folded, channels-last) or 'eager'.")
    ] = "deploy",
    round_to: Annotated[
        int, typer.Option("--round-to", help="--latency-steps: kept channels of groups without a clear step are "
                          "multiples of this (1 = exact; 8 runs well on most hardware).")
    ] = DEFAULT_ROUND_TO,
    space: Space = None,
    write_space: Annotated[
        Path | None,
        typer.Option("--write-space", help="--latency-steps: write --space (default: the model's bundled space, else "
                     "auto) with every measured group's round_to to this YAML, for `autoprune search --space`."),
    ] = None,
) -> None:
    """List the prunable channel groups of a model (name, channels, MACs controlled, members); with
    --latency-steps, measure each group's latency steps and pick its channel rounding."""
    settings = opt.settings_of(run, locals())  # the options as given, before anything else is bound
    from rich.table import Table

    from autoprune.engine.structure import ModelStructure

    started = time.perf_counter()
    if write_space is not None and not latency_steps:
        raise AutoPruneError("--write-space needs --latency-steps: the rounding it writes is measured")
    s = start("groups", run, settings, checkpoint=False)
    structure = ModelStructure(s.model.cpu(), s.input_shape)
    table = Table(title=f"{run.model}: {len(structure.groups)} prunable groups, "
                        f"{structure.dense_macs / 1e6:.2f}M MACs")
    for col in ("group", "channels", "MACs share", "members"):
        table.add_column(col)
    for g in structure.groups:
        table.add_row(g.name, str(g.channels), f"{g.macs / structure.dense_macs:.3f}", str(len(g.members)))
    out_console.print(table)
    out_console.print(f"never pruned (output layers): {', '.join(structure.output_layers)}")
    report = s.report("groups", run.model, run.dataset, run.seed, started)
    report.set(
        dense={"macs": structure.dense_macs, "params": structure.dense_params},
        groups=[{"name": g.name, "channels": g.channels, "macs": g.macs,
                 "members": [m.__dict__ for m in g.members]} for g in structure.groups],
        output_layers=structure.output_layers,
        unsupported_layers=structure.unsupported,
        files={},
    )  # fmt: skip
    if latency_steps:
        report.set(latency_steps=_latency_steps(s, structure, run.model, batch=batch, steps=steps, spacing=spacing,
                                                rounds=rounds, scope=steps_scope, form=form, round_to=round_to,
                                                space=space, write_space=write_space))  # fmt: skip
    report.write()


def _latency_steps(s: Setup, structure: Any, model: str, *, batch: int, steps: str, spacing: int, rounds: int,
                   scope: str, form: str, round_to: int, space: str | None,
                   write_space: Path | None) -> dict[str, Any]:  # fmt: skip
    """``groups --latency-steps``: measure, print, and write the space with the rounding found."""
    from rich.table import Table

    from autoprune.engine.latency_steps import measure_latency_steps
    from autoprune.pipelines.oneshot import resolve_space

    try:
        candidates = sorted({int(v) for v in steps.split(",") if v.strip()})
    except ValueError:
        raise AutoPruneError(f"--steps {steps!r} must be comma-separated channel counts, e.g. 8,16") from None
    at_least(1, batch=batch, spacing=spacing, rounds=rounds, round_to=round_to, steps=min(candidates, default=0))
    base = resolve_space(structure, model, space, None)
    structure.model.to(s.device)
    console.print(f"timing {len(base.groups)} groups at batch {batch} ({form} form, {scope}, {rounds} rounds) ...")

    def line(g: Any) -> None:
        found = f"step {g.fit.step}" if g.fit.step else g.fit.reason
        console.print(f"  {g.name} ({g.channels} ch): latency / widest at {', '.join(map(str, g.curve.counts))}: "
                      f"{' '.join(f'{v:.2f}' for v in g.curve.values)} (noise {g.curve.noise:.3f}): {found}, "
                      f"round_to {g.round_to}", highlight=False)  # fmt: skip

    result = measure_latency_steps(structure, groups=base.names, batch_size=batch, form=form, scope=scope,
                                   steps=candidates, spacing=spacing, fallback=round_to, rounds=rounds,
                                   on_group=line)  # fmt: skip
    table = Table(title=f"latency steps: batch {batch}, {form} form, threads {result.settings['threads']}, "
                        f"{result.settings['seconds']:.0f} s")
    for col in ("group", "channels", "found", "round_to"):
        table.add_column(col)
    for g in result.groups:
        table.add_row(g.name, str(g.channels), f"step {g.fit.step}" if g.fit.step else g.fit.reason, str(g.round_to))
    out_console.print(table)
    data = result.to_dict()
    data["space_file"] = None
    if write_space is not None:
        from autoprune.search_spaces import save_space, with_rounding

        save_space(with_rounding(base, result.rounding), write_space, model=model, comment=(
            f"written by `autoprune groups --latency-steps` for {model}: each group's round_to from its measured "
            f"latency steps\n(batch {batch}, {form} form, threads {result.settings['threads']}, "
            f"{result.settings['device']}); groups without a clear step keep round_to {round_to}"))  # fmt: skip
        data["space_file"] = str(write_space)
        out_console.print(f"space with the measured rounding: {write_space} (autoprune search --space {write_space})")
    return data



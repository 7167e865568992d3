"""The returned model minus the uniform candidate on test, paired per sample, for searches run before
``autoprune search`` reported it (``report.json``'s ``vs_uniform_test``, issue 16).

For each search run folder: rebuilds the exported model from ``plan.json`` + ``model.safetensors`` and the
uniform candidate from the same supernet with the search's BatchNorm calibration (the re-scoring's
training batches), checks that the exported model gives exactly the test accuracy the report recorded
(else it stops, naming the folder: not the same model) and whether the uniform one does (searches run
before the calibration was seeded on its own drew its augmentation from the global generator's state at
that point: then the uniform candidate is a twin with other BatchNorm statistics, and the result says
so, with ``exact: false``), and writes the paired difference to
``FOLDER/vs_uniform_test.json`` (a new file; ``report.json`` is left as it is). ``benchmarks/layer_ratios.py``
reads either. The test split only reports here; nothing is chosen by it.

    .venv/bin/python benchmarks/paired_test.py benchmarks/work/mobilenetv2/search-h0.3-0.2-s*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def paired(folder: Path, threads: int) -> dict[str, object]:
    from autoprune.data import load_dataset
    from autoprune.engine.export import load_pruned
    from autoprune.metrics import evaluate_accuracy
    from autoprune.models import build_model
    from autoprune.pipelines.search import rescore_calibration
    from autoprune.pipelines.search_report import vs_uniform_on_test
    from autoprune.supernet import Supernet

    torch.set_num_threads(threads)
    report = json.loads((folder / "report.json").read_text())
    cli, config = report["config"]["cli"], report["config"]
    splits = load_dataset(report["dataset"], None if report["dataset"] == "digits" else cli["data_dir"])

    def fresh() -> torch.nn.Module:
        return build_model(report["model"], num_classes=report["num_classes"], in_channels=report["in_channels"])

    exported = load_pruned(fresh(), folder / "plan.json", folder / "model.safetensors")
    hits = {"pruned": evaluate_accuracy(exported, splits.test_loader(), per_sample=True)}
    if hits["pruned"].top1 != report["pruned"]["accuracy"]:
        raise SystemExit(f"{folder}: the rebuilt exported model scores {hits['pruned'].top1:.4f} on test, the "
                         f"report {report['pruned']['accuracy']:.4f}: not the same model; nothing written")
    if report["counts"] == report["uniform_rescored"]["counts"]:  # the exported model is the uniform candidate
        return dict(vs_uniform_on_test(hits["pruned"], hits["pruned"]), exact=True, uniform_test_rebuilt=None,
                    report_difference=0.0, source="benchmarks/paired_test.py")
    supernet, _ = Supernet.load(Path(config["supernet"]), fresh())  # as the search read it
    calibration = rescore_calibration(splits, config["rescore_bn_batches"], report["seed"])
    uniform = supernet.extract(report["uniform_rescored"]["counts"], calibration=calibration,
                               bn_batches=len(calibration))
    hits["uniform"] = evaluate_accuracy(uniform, splits.test_loader(), per_sample=True)
    result = vs_uniform_on_test(hits["pruned"], hits["uniform"])
    exact = hits["uniform"].top1 == report["uniform"]["accuracy"]
    if not exact:  # searches before the calibration was seeded on its own (see rescore_calibration)
        result["statement"] += (f" Uniform candidate rebuilt with another augmentation draw of its calibration "
                                f"batches: test {hits['uniform'].top1:.4f} against the report's "
                                f"{report['uniform']['accuracy']:.4f}, so the paired SE is that of a twin.")
    return dict(result, exact=exact, uniform_test_rebuilt=hits["uniform"].top1,
                report_difference=report["pruned"]["accuracy"] - report["uniform"]["accuracy"],
                source="benchmarks/paired_test.py")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="search run folders (report.json, plan.json, weights)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    for folder in a.folders:
        if not (folder / "report.json").is_file():
            raise SystemExit(f"{folder}: no report.json; give a finished `autoprune search` run folder")
        out = folder / "vs_uniform_test.json"
        given = json.loads((folder / "report.json").read_text()).get("vs_uniform_test")
        if given is not None:
            print(f"{folder}: {given['statement']} (in report.json)")
        elif out.exists():
            print(f"{folder}: {json.loads(out.read_text())['statement']} (already in {out.name})")
        else:
            result = paired(folder, a.threads)
            out.write_text(json.dumps(result, indent=1) + "\n")
            print(f"{folder}: {result['statement']}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

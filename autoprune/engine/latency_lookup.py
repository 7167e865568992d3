"""The :class:`LatencyTable` type: per-layer latencies, the prediction built on them, and its JSON file format.

Tables are measured by :func:`autoprune.engine.latency_table.build_latency_table`; widths come from
:mod:`autoprune.engine.layer_widths`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from autoprune._jsonfile import JsonFile
from autoprune.engine.deploy import check_form
from autoprune.engine.latency_calibration import LatencyCalibration, features
from autoprune.engine.layer_widths import Shape, layer_widths, reachable_shapes
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError, CheckpointError

__all__ = ["TABLE_VERSION", "LatencyTable"]

TABLE_VERSION = 1


@dataclass
class LatencyTable(JsonFile):
    """Predicts a sub-network's latency as the sum of its conv/linear layers' measured latencies at their
    pruned widths plus a constant overhead (everything else: BN, activations, pooling, framework), measured
    on this machine; or, once calibrated against whole-model measurements
    (:func:`~autoprune.engine.latency_calibration.calibrate_table`), by the fitted model of the layer sum,
    the MACs and the kept activations.

    Attributes:
        batch_size: Batch size the entries were measured at.
        threads: CPU threads the entries were measured with.
        device: Device of the measurements (``"cpu"``, ``"cuda:0"``).
        entries: Per conv/linear layer name, ``{(in_channels_kept, out_channels_kept): ms}`` (a layer called
            several times in one forward pass holds the sum of its calls).
        overhead_ms: Measured dense latency minus the sum of the dense entries; may be negative where timing
            layers one by one costs more than running them in the model.
        form: ``eager`` or ``deploy`` (BatchNorm folded, channels-last; see :mod:`autoprune.engine.latency_table`).
        calibration: The fitted correction :meth:`predict` uses (None: overhead plus layer sum).
    """

    json_kind: ClassVar[str] = "latency table"
    batch_size: int
    threads: int
    device: str
    entries: dict[str, dict[Shape, float]]
    overhead_ms: float
    form: str = "eager"
    calibration: LatencyCalibration | None = None

    def predict(self, structure: ModelStructure, counts: Mapping[str, int], *, calibrated: bool = True) -> float:
        """Predicted latency in milliseconds of ``structure``'s model keeping ``counts[group]`` channels.

        With a :attr:`calibration` (and ``calibrated``), its fitted model of the layer sum, the MACs and
        the kept activations; otherwise :attr:`overhead_ms` plus the layer sum.

        Args:
            structure: The model's groups (the one the table was built for).
            counts: Kept channels per group; groups not in ``counts`` stay whole.

        Raises:
            AutoPruneError: an unknown group, or a layer width the table has no entry for (with the fix:
                rebuild the table with choices that include these counts).
        """
        layers = self.layers_ms(structure, counts)
        if self.calibration is not None and calibrated:
            return self.calibration.predict(layers, *features(structure, counts))
        return self.overhead_ms + layers

    def layers_ms(self, structure: ModelStructure, counts: Mapping[str, int]) -> float:
        """The sum of the conv/linear layers' entries at the widths ``counts`` gives them (see :meth:`predict`)."""
        total = 0.0
        for name, shape in layer_widths(structure, counts).items():
            layer = self.entries.get(name)
            if layer is None:
                raise AutoPruneError(
                    f"the latency table has no entries for layer {name!r}: it was built for another model; "
                    "build one for this model with build_latency_table(structure, choices)"
                )
            ms = layer.get(shape)
            if ms is None:
                raise AutoPruneError(
                    f"the latency table has no entry for layer {name!r} with (in, out) = {shape} channels: it was "
                    f"built for other choices (it has {len(layer)} widths of this layer). Rebuild it with "
                    "build_latency_table(structure, choices) where choices include these counts"
                )
            total += ms
        return total

    def missing(self, structure: ModelStructure, choices: Mapping[str, Sequence[int]]) -> list[tuple[str, Shape]]:
        """The ``(layer, (in, out))`` widths reachable with ``choices`` that the table has no entry for."""
        return [
            (name, shape)
            for name, shapes in reachable_shapes(structure, choices).items()
            for shape in sorted(shapes)
            if shape not in self.entries.get(name, {})
        ]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (width keys written as ``"in,out"``)."""
        return {
            "table_version": TABLE_VERSION,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "device": self.device,
            "form": self.form,
            "overhead_ms": self.overhead_ms,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "entries": {
                name: {f"{i},{o}": ms for (i, o), ms in sorted(layer.items())} for name, layer in self.entries.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyTable:
        """Rebuild a table written by :meth:`to_dict`.

        Raises:
            CheckpointError: another version, or a malformed mapping.
        """
        if not isinstance(data, Mapping) or data.get("table_version") != TABLE_VERSION:
            version = data.get("table_version") if isinstance(data, Mapping) else None
            raise CheckpointError(f"latency table version {version!r} is not supported (expected {TABLE_VERSION})")
        try:
            entries = {
                str(name): {_parse_shape(key): float(ms) for key, ms in layer.items()}
                for name, layer in data["entries"].items()
            }
            calibration = data.get("calibration")  # tables written before calibration: none
            return cls(
                batch_size=int(data["batch_size"]),
                threads=int(data["threads"]),
                device=str(data["device"]),
                entries=entries,
                overhead_ms=float(data["overhead_ms"]),
                form=check_form(data.get("form", "eager")),  # tables written before forms existed: eager
                calibration=None if calibration is None else LatencyCalibration.from_dict(calibration),
            )
        except AutoPruneError as exc:
            raise CheckpointError(f"malformed latency table: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"malformed latency table: {type(exc).__name__}: {exc}") from None


def _parse_shape(key: str) -> Shape:
    left, right = str(key).split(",")
    return int(left), int(right)

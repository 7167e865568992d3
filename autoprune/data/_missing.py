"""The error raised when a dataset folder is missing or malformed."""

from __future__ import annotations

from pathlib import Path

from autoprune.errors import DataNotFoundError


def data_not_found(
    name: str, folder: Path | None, layout: list[str], *, downloadable: bool, reason: str = ""
) -> DataNotFoundError:
    """Build a :class:`DataNotFoundError` that says what was expected and how to get it.

    Args:
        name: Registry name of the dataset.
        folder: The data folder that was given (``None`` if none was).
        layout: Expected paths, written with ``DIR`` for the data folder (replaced by ``folder`` if given).
        downloadable: Whether torchvision can download the dataset.
        reason: What was found wrong, if known (e.g. torchvision's message).
    """
    if folder is None:
        where = "no data folder was given"
    elif reason:
        where = f"could not be read from {str(folder)!r} ({reason})"
    else:
        where = f"not found in {str(folder)!r}"
    lines = [f"dataset {name!r}: {where}."]
    root = "DIR" if folder is None else str(folder)
    lines.append("Expected layout: " + "; ".join(p.replace("DIR", root, 1) for p in layout) + ".")
    if folder is None:
        lines.append("Pass the folder as data_dir (--data-dir on the command line).")
    if downloadable:
        lines.append(
            "To fetch it, pass --download (download=True) once on a machine with internet, "
            "then reuse the folder."
        )
    else:
        lines.append(f"{name!r} cannot be downloaded: prepare the folder yourself.")
    return DataNotFoundError(" ".join(lines))

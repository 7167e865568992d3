"""JSON files written atomically and read back with errors that name the file (plans, tables, reports)."""

from __future__ import annotations

import abc
import json
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from autoprune.errors import CheckpointError

_J = TypeVar("_J", bound="JsonFile")


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path



def read_json(path: Path, what: str) -> Any:
    """The parsed contents of the JSON file ``path``, which holds a ``what`` (``"plan"``, ...).

    Raises:
        CheckpointError: The file does not exist, cannot be read or is not JSON (naming it).
    """
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{what} file {path} is corrupt or not a {what}: {exc}") from None


class JsonFile(abc.ABC):
    """A value kept in one JSON file: :meth:`save` writes :meth:`to_dict`, :meth:`load` reads it back.

    Subclasses set :attr:`json_kind` and implement :meth:`to_dict` and :meth:`from_dict`; errors of
    ``from_dict`` come out of :meth:`load` as :class:`~autoprune.errors.CheckpointError` naming the file.
    """

    json_kind: ClassVar[str]  # what the file holds, for messages ("plan", "latency table")

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls: type[_J], data: Any) -> _J:
        """Rebuild the value from what :meth:`to_dict` returned."""

    def save(self, path: str | Path) -> Path:
        """Write the value as JSON atomically (temp file in the same folder, then rename); return ``path``."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls: type[_J], path: str | Path) -> _J:
        """Read a value written by :meth:`save`.

        Raises:
            CheckpointError: missing, truncated or malformed file (naming it).
        """
        path = Path(path)
        data = read_json(path, cls.json_kind)
        try:
            return cls.from_dict(data)
        except CheckpointError as exc:
            raise CheckpointError(f"{cls.json_kind} file {path}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{cls.json_kind} file {path} is corrupt or not a {cls.json_kind}: {exc}") from None

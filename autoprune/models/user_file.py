"""Models defined in the user's own Python file, named ``path/to/file.py:factory``.

**This executes the user's code, by design**: the file is imported like any module (its top level runs)
and ``factory`` is called to build the model. Only name files you trust, exactly as you would only
``import`` modules you trust. Loading *weights*, by contrast, never runs code (see
:mod:`autoprune.models.checkpoint`).

The factory receives ``num_classes=`` and ``in_channels=`` as keyword arguments if its signature accepts
them (or takes ``**kwargs``); otherwise it is called without them and must build the right head itself.
While the file is imported and the factory runs, the file's folder is on ``sys.path`` so that it can
import its neighbours.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from torch import nn

from autoprune.errors import UnknownNameError
from autoprune.models._factory import ModelSourceError, call_factory


def split_file_spec(name: str) -> tuple[Path, str] | None:
    """Split ``"path/to/file.py:factory"`` into its path and factory name; ``None`` if not of that form.

    Raises:
        ModelSourceError: If ``name`` names a ``.py`` file without a factory (``"net.py"``, ``"net.py:"``).
    """
    path, sep, factory = name.rpartition(":")
    if sep and path.endswith(".py") and factory:
        return Path(path), factory
    if name.endswith((".py", ".py:")):
        raise ModelSourceError(
            f"model {name!r} names a Python file but no factory; write it as "
            f"'{name.rstrip(':')}:<factory>', where <factory> is a function or class that returns the model"
        )
    return None


def build_from_file(
    path: str | Path, factory: str, *, num_classes: int = 10, in_channels: int = 3
) -> nn.Module:
    """Import ``path`` and build a model with its ``factory`` (runs the file's code, see module docstring).

    Args:
        path: The Python file.
        factory: Name of a callable defined or imported in the file.
        num_classes: Passed as ``num_classes=`` if the factory accepts it.
        in_channels: Passed as ``in_channels=`` if the factory accepts it.

    Returns:
        The model the factory returned.

    Raises:
        ModelSourceError: If the file does not exist or the factory does not return an ``nn.Module``.
        UnknownNameError: If the file has no attribute ``factory`` (listing the callables it defines).
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ModelSourceError(f"model file {str(path)!r} does not exist (resolved to {str(file)!r})")
    with _on_sys_path(file.parent):
        module = _import_file(file)
        if not hasattr(module, factory):
            raise UnknownNameError(_missing_factory_message(module, file, factory))
        return call_factory(
            getattr(module, factory),
            f"factory {factory!r} in {str(file)!r}",
            num_classes=num_classes,
            in_channels=in_channels,
        )


def module_callables(module: ModuleType) -> list[str]:
    """Public callables defined in ``module`` itself (not imported), sorted: the candidate factories."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module.__name__
    )


def _missing_factory_message(module: ModuleType, file: Path, factory: str) -> str:
    candidates = module_callables(module)
    close = difflib.get_close_matches(factory, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listed = ", ".join(candidates) if candidates else "none"
    return f"{str(file)!r} has no factory {factory!r}.{hint} Callables defined in it: {listed}."


def _import_file(file: Path) -> ModuleType:
    """Execute ``file`` as a fresh module under a private name derived from its path."""
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    module_name = f"_autoprune_user_{re.sub(r'[^0-9a-zA-Z_]', '_', file.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"cannot import {str(file)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses, pickling and typing look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)

"""Helpers shared by the subcommands: loading a model factory, parsing shapes."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


class CLIError(Exception):
    """A user error on the command line; the CLI prints it and exits with code 2."""


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``"64,784"`` (or ``"64x784"``) into ``(64, 784)``."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise CLIError(
            f"--input-shape: expected integers separated by commas, got {text!r}"
        ) from None
    if not shape or any(d <= 0 for d in shape):
        raise CLIError(f"--input-shape: expected positive integers, got {text!r}")
    return shape


def load_factory(spec: str) -> Any:
    """Resolve ``path/to/file.py:factory`` or ``package.module:factory`` to the object named.

    The factory is returned uncalled; :func:`build_model` calls it.
    """
    if ":" not in spec:
        raise CLIError(
            f"model: expected 'path/to/file.py:factory' or 'module.path:factory', got {spec!r}"
        )
    target, _, attr = spec.rpartition(":")
    if not attr:
        raise CLIError(f"model: no factory name after ':' in {spec!r}")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise CLIError(f"model: file not found: {target}")
        name = f"_initscope_user_{abs(hash(path.resolve()))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise CLIError(f"model: cannot import {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise CLIError(f"model: cannot import module {target!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        names = sorted(
            n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))
        )
        raise CLIError(
            f"model: {target} has no attribute {attr!r}; "
            f"callables there: {', '.join(names) or 'none'}"
        ) from None


def build_model(spec: str) -> Any:
    """Load the factory named by ``spec`` and call it with no arguments to get an ``nn.Module``."""
    import torch.nn as nn

    factory = load_factory(spec)
    model = factory() if not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise CLIError(f"model: {spec} returned {type(model).__name__}, expected a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise CLIError(f"model: {spec} has no parameters")
    return model

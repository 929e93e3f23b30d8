"""Helpers shared by the subcommands: loading a model factory, parsing shapes, checking output
paths, and turning what the user's code raises into one-line errors."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


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
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: a syntax error, a failed import, anything
            del sys.modules[name]
            raise CLIError(f"model: importing {target} failed: {describe(exc)}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise CLIError(f"model: cannot import module {target!r}: {exc}") from None
        except Exception as exc:
            raise CLIError(f"model: importing {target} failed: {describe(exc)}") from None
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
    if isinstance(factory, nn.Module):
        model = factory
    elif not callable(factory):
        raise CLIError(f"model: {spec} is a {type(factory).__name__}, expected a callable factory")
    else:
        try:
            model = factory()
        except Exception as exc:
            raise CLIError(f"model: the factory {spec} raised {describe(exc)}") from None
    if not isinstance(model, nn.Module):
        raise CLIError(f"model: {spec} returned {type(model).__name__}, expected a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise CLIError(f"model: {spec} has no parameters")
    return model


def describe(exc: BaseException) -> str:
    """``"RuntimeError: message (at file.py:12)"``: the innermost frame outside torch and
    initscope, that is in the user's code, when there is one."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        return text  # its message already names the file and the line
    frames = traceback.extract_tb(exc.__traceback__)
    library = tuple(str(Path(m.__file__).parent) for m in _library_modules())
    own = [f for f in frames if not f.filename.startswith(library)]
    if own:
        text += f" (at {own[-1].filename}:{own[-1].lineno})"
    return text


def _library_modules() -> list[Any]:
    import torch

    import initscope

    return [torch, initscope]


@contextmanager
def user_code(what: str) -> Iterator[None]:
    """Turn an exception raised while running the user's model into a :class:`CLIError` saying
    ``what`` raised it. Library errors (``ValueError``, ``TypeError``) pass through: their message
    already names the argument."""
    try:
        yield
    except (CLIError, ValueError, TypeError):
        raise
    except Exception as exc:
        raise CLIError(f"{what} raised {describe(exc)}") from None


def check_output(option: str, path: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Fail now, before any work, when ``path`` cannot be written as a file.

    The folder must exist and be writable, ``path`` must not be a folder, and when ``suffixes``
    is given its extension must be one of them.
    """
    out = Path(path)
    if out.is_dir():
        raise CLIError(f"{option}: {path} is a folder; give a file path")
    folder = out.parent
    if not folder.is_dir():
        raise CLIError(f"{option}: the folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise CLIError(f"{option}: {path} is not writable")
    if suffixes and out.suffix.lower().lstrip(".") not in suffixes:
        raise CLIError(
            f"{option}: expected a file name ending in one of "
            f"{', '.join('.' + s for s in suffixes)}, got {path!r}"
        )
    return out


def check_batch(model: nn.Module, batch: torch.Tensor, option: str) -> None:
    """Run ``model`` once on ``batch`` to fail early, naming ``option``, when it rejects it.

    No gradients; torch's global RNG and every buffer (running statistics, counters) are put back,
    so the model is as it was.
    """
    import torch

    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(batch)
    except Exception as exc:
        raise CLIError(
            f"{option}: the model cannot run a batch of shape {tuple(batch.shape)}: {describe(exc)}"
        ) from None
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)

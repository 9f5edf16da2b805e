"""Exceptions raised by xpnet.

Every error is a subclass of :class:`XpnetError` *and* of the built-in type a
user would expect (``ValueError`` for a wrong shape, ``TypeError`` for a wrong
dtype, ...), so ``except ValueError`` keeps working for people who do not know
about xpnet's own classes.
"""

from __future__ import annotations

from pathlib import Path

# Error classes only (tests/test_error_classes.py checks each); install_command is a helper.
__all__ = [
    "XpnetError",
    "BackendUnavailableError",
    "UnknownBackendError",
    "DeviceSpecError",
    "DeviceMismatchError",
    "ShapeError",
    "DTypeError",
    "StateError",
    "DivergenceError",
    "CheckpointError",
    "DataError",
    "ExportError",
]


class XpnetError(Exception):
    """Base class of every error raised on purpose by xpnet."""


class BackendUnavailableError(XpnetError, ImportError):
    """A backend library is missing, or it has no usable device."""


class UnknownBackendError(XpnetError, ValueError):
    """A backend name, or an array namespace, that xpnet does not support."""


class DeviceSpecError(XpnetError, ValueError):
    """A device spec the backend cannot interpret (``"cuda:0"`` for NumPy, ...)."""


class DeviceMismatchError(XpnetError, ValueError):
    """An array lives on another backend or device than the model."""


class ShapeError(XpnetError, ValueError):
    """An array has the wrong number of dimensions or the wrong shape."""


class DTypeError(XpnetError, TypeError):
    """An array has the wrong dtype (e.g. float labels, uint8 images)."""


class StateError(XpnetError, RuntimeError):
    """A call made in the wrong order (``Dropout.backward`` before any ``forward``, ...)."""


class DivergenceError(XpnetError, FloatingPointError):
    """The training loss became NaN or infinite."""


class CheckpointError(XpnetError, ValueError):
    """A saved model is missing, truncated, corrupted or incompatible."""


class DataError(XpnetError, ValueError):
    """A dataset file is missing, truncated, corrupted or malformed."""


class ExportError(XpnetError, ValueError):
    """A model (or one of its layers) cannot be exported (ONNX, see :mod:`xpnet.export`)."""


def install_command(*extras: str) -> str:
    """The pip command that adds optional extras of xpnet, right for how xpnet was installed.

    xpnet run from a source checkout (the package sits beside its ``pyproject.toml``:
    ``pip install -e .`` or ``PYTHONPATH``) gets an editable install of that checkout,
    because ``pip install "xpnet[torch]"`` would look for xpnet on PyPI; an installed
    wheel gets ``pip install "xpnet[torch]"``, which pip resolves against the
    installed xpnet.

    Parameters
    ----------
    *extras : str
        Extra names from ``pyproject.toml`` (``"torch"``, ``"plot"``, ...).

    Returns
    -------
    str
        A shell command, quoted for copying.

    Examples
    --------
    >>> install_command("torch").startswith("pip install")
    True
    """
    spec = ",".join(extras)
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "xpnet" / "errors.py").is_file():
        return f'pip install -e "{root}[{spec}]"'
    return f'pip install "xpnet[{spec}]"'

"""Errors raised by aelab.

Every error is an :class:`AelabError` and also subclasses the matching built-in
exception, so ``except ValueError`` keeps working for code written against
scikit-learn or NumPy.
"""

from __future__ import annotations

__all__ = [
    "AelabError",
    "DataError",
    "ConfigError",
    "NotFittedError",
    "TrainingError",
    "PersistenceError",
    "DownloadError",
    "MissingDependencyError",
]


class AelabError(Exception):
    """Base class of every error aelab raises on purpose."""


class DataError(AelabError, ValueError):
    """The input data is unusable: wrong shape, NaN/inf, non-numeric, unreadable file."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file or folder does not exist (both a DataError and a FileNotFoundError)."""


class NonNumericError(DataError, TypeError):
    """Data that is not numbers (text, objects); a TypeError too, as numpy's own conversion error."""


class ConfigError(AelabError, ValueError):
    """A parameter has a value outside the allowed set or range."""


class NotFittedError(AelabError, ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``.

    Also a ``ValueError`` and an ``AttributeError``, as scikit-learn's
    ``NotFittedError`` (which it does not subclass, so that ``import aelab`` does not
    import scikit-learn).
    """


class TrainingError(AelabError, RuntimeError):
    """Training failed, for example because the loss became NaN or infinite."""


class PersistenceError(AelabError, ValueError):
    """A model folder could not be saved or loaded."""


class OutputIsAFolderError(PersistenceError, IsADirectoryError):
    """A file was to be written where a folder stands (also an IsADirectoryError)."""


class DownloadError(AelabError, OSError):
    """A data file could not be downloaded or failed its checksum."""


class MissingDependencyError(AelabError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise a MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        msg = (
            f"{purpose} needs the optional package {module!r}, which is not installed. "
            f"Install it with: pip install 'aelab[{extra}]'"
        )
        raise MissingDependencyError(msg) from exc

"""scikit-learn's estimator protocol, without importing scikit-learn.

``import sklearn.base`` costs about 1.4 s and 170 MB of resident memory with
scikit-learn 1.9 (it imports scipy.stats, and pandas when installed): more than half
of what ``import aelab`` would cost on top of torch, and the whole margin of a
streamed scoring run (``benchmarks/streaming.py``). So the estimators implement the
protocol themselves, as scikit-learn documents for third-party estimators:
``get_params`` / ``set_params`` from the ``__init__`` signature (what ``clone``,
``Pipeline`` and ``GridSearchCV`` use), ``fit_transform``, a repr that shows the
parameters changed from their defaults, and ``__sklearn_tags__``, which imports
scikit-learn only when scikit-learn itself asks for the tags.

The decorators the estimators' methods share live here too: :func:`accepts_renamed` (old
parameter names, with a FutureWarning) and :func:`in_threads` (the ``n_threads`` parameter).
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from .exceptions import ConfigError

__all__ = ["ParamsBase", "accepts_renamed", "in_threads", "positive_int"]


def positive_int(n) -> bool:
    """An int (numpy's too) of at least 1, and not a bool."""
    return not isinstance(n, bool) and isinstance(n, (int, np.integer)) and n >= 1


def accepts_renamed(init):
    """Let ``__init__`` take the old names of the class's ``_renamed_params``, with a FutureWarning.

    The wrapper keeps the signature of ``init`` (``inspect.signature`` follows
    ``__wrapped__``), so ``get_params``, ``clone`` and scikit-learn see only the new names.
    """

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        init(self, *args, **self._renamed(kwargs))

    return wrapper


def in_threads(method):
    """Run ``method`` with ``torch.set_num_threads(self.n_threads)``, restoring the caller's setting after."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        n = self.n_threads
        if n is None or not positive_int(n):
            return method(self, *args, **kwargs)  # None, or a bad value that fit's validation reports
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(int(n))
        try:
            return method(self, *args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return wrapper


class ParamsBase:
    """Parameters from ``__init__``; the contract of ``sklearn.base.BaseEstimator``."""

    @classmethod
    def _init_parameters(cls) -> list[inspect.Parameter]:
        """The ``__init__`` parameters after ``self``; each must be named (no *args/**kwargs)."""
        if cls.__init__ is object.__init__:
            return []
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must name every parameter; *args/**kwargs are not allowed.")
        return params

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return sorted(p.name for p in cls._init_parameters())

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters and their values (``deep`` adds nested ones as ``a__b``)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor parameters (``a__b`` for nested ones); returns ``self``.

        Raises
        ------
        ConfigError
            A name that is not a parameter of this estimator; the message lists the valid ones.
        """
        valid = self._get_param_names()
        nested: dict[str, dict] = {}
        params = self._renamed(params)
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ConfigError(
                    f"{type(self).__name__} has no parameter {name!r}. Valid parameters are: {', '.join(valid)}."
                )
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    #: old parameter name -> new one; the old name still works, with a FutureWarning
    _renamed_params: dict[str, str] = {}

    def _renamed(self, params: dict) -> dict:
        """``params`` with deprecated names replaced by the current ones (FutureWarning)."""
        out = dict(params)
        for old, new in self._renamed_params.items():
            if old in out:
                if new in out:
                    raise ConfigError(f"pass {new}=... only; {old}=... is its deprecated old name.")
                import warnings

                warnings.warn(f"{type(self).__name__}: the parameter {old!r} is now {new!r}; the old name "
                              f"will be removed in aelab 0.3 ({old!r} is scikit-learn's score() method).",
                              FutureWarning, stacklevel=3)
                out[new] = out.pop(old)
        return out

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X)`` then ``transform(X)``: the latent codes of the training data."""
        return self.fit(X, y, **fit_params).transform(X)

    def __repr__(self) -> str:
        changed = [f"{p.name}={getattr(self, p.name, None)!r}"
                   for p in sorted(self._init_parameters(), key=lambda p: p.name)
                   if not _same(getattr(self, p.name, None), p.default)]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so scikit-learn is already imported.
        from sklearn.utils import InputTags, TargetTags, Tags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=["float32"]),
            input_tags=InputTags(two_d_array=True, three_d_array=True),
        )


def _same(a, b) -> bool:
    if a is b:
        return True
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:  # e.g. arrays, whose == is elementwise
        return False

"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor` on every array library.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor`` (stochastic solvers ``"sgd"`` and ``"adam"``) that train with
xpnet on NumPy, CuPy, PyTorch, JAX or array-api-strict::

    from xpnet.sklearn import MLPClassifier   # instead of sklearn.neural_network
    clf = make_pipeline(StandardScaler(), MLPClassifier(solver="sgd", batch_size=32))

Where training runs follows scikit-learn's array API rules:

* with ``sklearn.set_config(array_api_dispatch=True)`` and an array of another
  library as ``X``, training runs on that library and device (the backend is
  chosen from ``X``); ``y`` and ``sample_weight`` are moved to it by the
  estimator, and predictions come back in ``X``'s namespace;
* otherwise ``X`` is converted with ``check_array`` to NumPy and the
  ``backend=`` (``device=``, ``dtype=``) parameters decide where training runs;
  predictions are NumPy arrays.

Needs the optional extra: ``pip install "xpnet[sklearn]"``.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "xpnet.sklearn needs scikit-learn: pip install \"xpnet[sklearn]\""
    ) from exc

from ._classifier import MLPClassifier
from ._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]

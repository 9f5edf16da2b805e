"""xpnet.sklearn: scikit-learn's own estimator suite, array API dispatch, meta-estimators."""

from __future__ import annotations

import os

# scikit-learn refuses array API dispatch unless SciPy's own support is on.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from xpnet.sklearn import MLPClassifier, MLPRegressor


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    """Every check of scikit-learn's suite, with scikit-learn's default hyperparameters."""
    check(estimator)

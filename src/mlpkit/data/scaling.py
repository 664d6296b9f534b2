"""The scikit-learn steps mlpkit adds for data.numeric=robust (RealMLP-TD's robust scaling and smooth
clip). A module of its own: scikit-learn is imported only by the runs that use it, and a saved
preprocessing names these classes (mlpkit.data.preprocess.TRUSTED_TYPES) so that skops loads them."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.preprocessing import RobustScaler

SMOOTH_CLIP = 3.0  # RealMLP-TD's: values end within +-3


class RobustScale(RobustScaler):
    """scikit-learn's RobustScaler ((x - median) / IQR) with pytabkit's fallback where a column's IQR is 0:
    half its range instead; a constant column keeps scale 1 (its train values become 0)."""

    def fit(self, X, y=None):
        super().fit(X, y)
        maybe = np.flatnonzero(self.scale_ == 1.0)  # RobustScaler's scale for a zero IQR (or a true 1)
        if len(maybe):
            X = np.asarray(X, np.float64)[:, maybe]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an all-missing column: NaN statistics, imputed later
                q1, q3 = np.nanpercentile(X, [25.0, 75.0], axis=0)
                half_range = 0.5 * (np.nanmax(X, axis=0) - np.nanmin(X, axis=0))
            self.scale_ = self.scale_.copy()
            self.scale_[maybe] = np.where((q3 - q1 == 0) & (half_range > 0), half_range, 1.0)
        return self


class SmoothClip(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """x / sqrt(1 + (x / limit)^2): about x near 0, never beyond +-limit (RealMLP-TD's smooth clip)."""

    def __init__(self, limit: float = SMOOTH_CLIP):
        self.limit = limit

    def fit(self, X, y=None):
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        X = np.asarray(X, np.float64)
        t = np.divide(X, self.limit)  # the formula's steps in one temporary, each as numpy would compute it
        np.multiply(t, t, out=t)
        np.add(t, 1.0, out=t)
        np.sqrt(t, out=t)
        return np.divide(X, t, out=t)


def median(values: np.ndarray) -> float:
    """SimpleImputer's statistic (its `strategy`): the median of a column's present values, by numpy's
    partition, the same number as strategy="median", whose masked-array sort is 10x slower on large
    tables; 0 for a column with no value (as strategy="median" with keep_empty_features=True)."""
    return float(np.median(values)) if len(values) else 0.0

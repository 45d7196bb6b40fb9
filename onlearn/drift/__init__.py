"""Monitoring a served model: input drift per feature, drift of its answers, concept drift.

- :mod:`~onlearn.drift.profiles`: reference profiles of the features (bins, frequencies,
  samples, missing rates), stored with model versions;
- :mod:`~onlearn.drift.stats`: drift statistics (PSI, KL, Jensen-Shannon, Hellinger,
  chi-squared, Kolmogorov-Smirnov, Wasserstein), their calibrated null distributions, and
  corrections over many features;
- :mod:`~onlearn.drift.input_drift`: :class:`InputDriftMonitor`, a window of rows against a
  profile;
- :mod:`~onlearn.drift.prediction_drift`: drift of predicted labels and confidence, agreement
  between champion and challengers (no labels needed);
- :mod:`~onlearn.drift.detectors`: concept drift detectors on the error stream (river's and
  Linear Four Rates) behind one interface, built from config (:mod:`~onlearn.drift.kswin`:
  river's KSWIN with its p-values cached);
- :mod:`~onlearn.drift.performance_estimate`: a classifier's accuracy estimated from its
  calibrated confidence before labels arrive (CBPE), and its expected calibration error;
- :mod:`~onlearn.drift.importance`: feature importance of a version over labelled traffic
  (weights, or permutation within a CPU budget) and an alarm when its top ranking moves.
"""

from onlearn.drift.detectors import DETECTORS, ConceptDriftDetector, detector_from_config
from onlearn.drift.importance import (
    FeatureImportance,
    ImportanceBudget,
    ImportanceDrift,
    feature_importance,
)
from onlearn.drift.input_drift import DriftReport, FeatureDrift, InputDriftMonitor
from onlearn.drift.lfr import LinearFourRates
from onlearn.drift.performance_estimate import (
    ConfidenceCalibrator,
    PerformanceEstimator,
    confidence_of,
    expected_calibration_error,
)
from onlearn.drift.prediction_drift import (
    AgreementMonitor,
    AgreementReport,
    ChallengerAgreement,
    PredictionDriftMonitor,
    prediction_profile,
    prediction_row,
)
from onlearn.drift.profiles import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    ProfileBuilder,
    build_profile,
)
from onlearn.drift.stats import HistogramNull, adjust_p_values

__all__ = [
    "DETECTORS",
    "AgreementMonitor",
    "AgreementReport",
    "CategoricalProfile",
    "ChallengerAgreement",
    "ConceptDriftDetector",
    "ConfidenceCalibrator",
    "DriftReport",
    "FeatureDrift",
    "FeatureImportance",
    "HistogramNull",
    "ImportanceBudget",
    "ImportanceDrift",
    "InputDriftMonitor",
    "LinearFourRates",
    "NumericProfile",
    "PerformanceEstimator",
    "PredictionDriftMonitor",
    "Profile",
    "ProfileBuilder",
    "adjust_p_values",
    "build_profile",
    "confidence_of",
    "detector_from_config",
    "expected_calibration_error",
    "feature_importance",
    "prediction_profile",
    "prediction_row",
]

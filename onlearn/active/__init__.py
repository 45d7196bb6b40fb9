"""Active learning: which predictions are worth a human label, within a labelling budget.

- ``uncertainty``: how unsure one model is (least confident, margin, entropy), one row in pure
  Python or many rows through modAL.
- ``committee``: how much several versions disagree (vote entropy, consensus entropy, KL max
  disagreement).
- ``budget`` and ``strategies``: the budgeted stream strategies of Zliobaite et al. (2014), on
  a cumulative budget with a capped credit line (cold start, drift alarms) and a rate cap.
- ``steering``: drift seen in the bought labels (more errors than the model's confidence
  promised), which opens the credit line again.
- ``sampler``: a measure, a strategy and a random evaluation slice, deciding per prediction.
"""

from onlearn.active.budget import BudgetManager, CreditBudget
from onlearn.active.committee import (
    COMMITTEE_MEASURES,
    consensus_entropy,
    disagreement_many,
    kl_max_disagreement,
    vote_entropy,
)
from onlearn.active.sampler import (
    ALL_MEASURES,
    DRIFT_ALARMS,
    Decision,
    RandomSlice,
    Reason,
    Sampler,
    priority_of,
    sampler_from_config,
)
from onlearn.active.steering import SurpriseDetector
from onlearn.active.strategies import (
    CREDIT_KEYS,
    DEFAULT_SEED,
    DEFAULT_STEP,
    STRATEGIES,
    FixedUncertainty,
    RandomizedVariableUncertainty,
    RandomSampling,
    Split,
    Strategy,
    VariableUncertainty,
)
from onlearn.active.uncertainty import (
    MEASURES,
    entropy,
    least_confident,
    margin,
    rank_by_uncertainty,
    uncertainty_many,
)

__all__ = [
    "ALL_MEASURES",
    "COMMITTEE_MEASURES",
    "CREDIT_KEYS",
    "DRIFT_ALARMS",
    "DEFAULT_SEED",
    "DEFAULT_STEP",
    "MEASURES",
    "STRATEGIES",
    "BudgetManager",
    "CreditBudget",
    "Decision",
    "FixedUncertainty",
    "RandomSampling",
    "RandomSlice",
    "RandomizedVariableUncertainty",
    "Reason",
    "Sampler",
    "SurpriseDetector",
    "Split",
    "Strategy",
    "VariableUncertainty",
    "consensus_entropy",
    "disagreement_many",
    "entropy",
    "kl_max_disagreement",
    "least_confident",
    "margin",
    "priority_of",
    "rank_by_uncertainty",
    "sampler_from_config",
    "uncertainty_many",
    "vote_entropy",
]

"""Active learning: which predictions are worth a human label, within a labelling budget.

- ``uncertainty``: how unsure one model is (least confident, margin, entropy), one row in pure
  Python or many rows through modAL.
- ``committee``: how much several versions disagree (vote entropy, consensus entropy, KL max
  disagreement).
- ``budget`` and ``strategies``: the budgeted stream strategies of Zliobaite et al. (2014).
- ``sampler``: a measure, a strategy and a random evaluation slice, deciding per prediction.
"""

from onlearn.active.budget import BudgetManager
from onlearn.active.committee import (
    COMMITTEE_MEASURES,
    consensus_entropy,
    disagreement_many,
    kl_max_disagreement,
    vote_entropy,
)
from onlearn.active.sampler import (
    ALL_MEASURES,
    Decision,
    RandomSlice,
    Reason,
    Sampler,
    priority_of,
    sampler_from_config,
)
from onlearn.active.strategies import (
    DEFAULT_SEED,
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
    "DEFAULT_SEED",
    "MEASURES",
    "STRATEGIES",
    "BudgetManager",
    "Decision",
    "FixedUncertainty",
    "RandomSampling",
    "RandomSlice",
    "RandomizedVariableUncertainty",
    "Reason",
    "Sampler",
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

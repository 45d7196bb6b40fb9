"""Model pipelines: specs, the catalog of river pipelines, batch predictions, signed artifacts,
scikit-learn adapters."""

from onlearn.models.artifacts import check_spec_signature, dump_signed, load_signed, sign_spec
from onlearn.models.batch import (
    predict_batch,
    predict_columns,
    predict_proba_batch,
    predict_proba_columns,
)
from onlearn.models.binary import BinaryClassifier
from onlearn.models.catalog import (
    CATALOG,
    DEFAULT_SEED,
    TASKS,
    CatalogEntry,
    PipelineSpec,
    build_pipeline,
    catalog_names,
)
from onlearn.models.select import SelectPresent, SubsetRegressor
from onlearn.models.sklearn_adapter import SklearnBatch, SklearnIncremental, sklearn_from_spec

__all__ = [
    "CATALOG",
    "DEFAULT_SEED",
    "TASKS",
    "BinaryClassifier",
    "CatalogEntry",
    "PipelineSpec",
    "SelectPresent",
    "SklearnBatch",
    "SklearnIncremental",
    "SubsetRegressor",
    "build_pipeline",
    "catalog_names",
    "check_spec_signature",
    "dump_signed",
    "load_signed",
    "predict_batch",
    "predict_columns",
    "predict_proba_batch",
    "predict_proba_columns",
    "sign_spec",
    "sklearn_from_spec",
]

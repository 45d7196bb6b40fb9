"""Model pipelines: specs, the catalog of river pipelines, batch predictions, signed artifacts."""

from onlearn.models.artifacts import dump_signed, load_signed
from onlearn.models.batch import predict_batch, predict_proba_batch
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

__all__ = [
    "CATALOG",
    "DEFAULT_SEED",
    "TASKS",
    "BinaryClassifier",
    "CatalogEntry",
    "PipelineSpec",
    "SelectPresent",
    "SubsetRegressor",
    "build_pipeline",
    "catalog_names",
    "dump_signed",
    "load_signed",
    "predict_batch",
    "predict_proba_batch",
]

"""Model pipelines: specs, the catalog of river pipelines, and signed model artifacts."""

from onlearn.models.artifacts import dump_signed, load_signed
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
    "CatalogEntry",
    "PipelineSpec",
    "SelectPresent",
    "SubsetRegressor",
    "build_pipeline",
    "catalog_names",
    "dump_signed",
    "load_signed",
]

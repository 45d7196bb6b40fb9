"""onlearn as a Label Studio ML backend: the protocol's translation (``protocol``) and the
backend that answers Label Studio's calls through an engine (``backend``)."""

from onlearn.label_studio.backend import LabelStudioBackend
from onlearn.label_studio.protocol import (
    Binding,
    ChoicesTag,
    bind,
    choices_tags,
    model_version,
    task_features,
)

__all__ = [
    "Binding",
    "ChoicesTag",
    "LabelStudioBackend",
    "bind",
    "choices_tags",
    "model_version",
    "task_features",
]

"""Models: tracked training runs, a registry with aliases, flavors and signatures.

Declare a model in ``definitions.py`` with ``@model`` (its features, label, time split, gates and
parameters); ``tarmac train`` fits and registers a version; ``tarmac validate`` runs its gates;
``tarmac promote`` / ``rollback`` move its aliases. The SDK is ``project.models``.
"""

from tarmac.models.definitions import (
    Label,
    ModelDefinition,
    TimeSplit,
    TrainingData,
    label,
    model,
    time_split,
)

__all__ = ["Label", "ModelDefinition", "TimeSplit", "TrainingData", "label", "model",
           "time_split"]

"""Models: tracked training runs, a registry with aliases, flavors and signatures.

Declare a model in ``definitions.py`` with ``@model`` (its features, label, time split, gates and
parameters); ``tarmac train`` fits and registers a version; ``tarmac validate`` runs its gates;
``tarmac promote`` / ``rollback`` move its aliases. The SDK is ``project.models`` (a
``ModelRegistry``, which returns ``LoadedModel``); ``project.models.train`` returns ``TrainResult``,
``project.models.score`` (batch scoring into a lake table) ``ScoreResult``.
"""

from typing import TYPE_CHECKING

from tarmac._lazy import lazy_exports
from tarmac.models.definitions import (
    Label,
    ModelDefinition,
    TimeSplit,
    TrainingData,
    label,
    model,
    time_split,
)

if TYPE_CHECKING:
    from tarmac.models.registry import LoadedModel, ModelRegistry
    from tarmac.models.score import ScoreResult
    from tarmac.models.train import TrainResult

__all__ = ["Label", "LoadedModel", "ModelDefinition", "ModelRegistry", "ScoreResult",
           "TimeSplit", "TrainResult", "TrainingData", "label", "model", "time_split"]

# what the SDK hands back loads on first use: definitions.py imports this package, and must not
# pay for DuckDB, Delta, the catalog or scikit-learn to declare a model
_LAZY = {"LoadedModel": "tarmac.models.registry", "ModelRegistry": "tarmac.models.registry",
         "TrainResult": "tarmac.models.train", "ScoreResult": "tarmac.models.score"}


__getattr__ = lazy_exports(__name__, _LAZY)

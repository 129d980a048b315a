"""The feature store: features defined once, served offline for training and online for
inference with the same values, point-in-time-correct.

Declare in ``definitions.py`` with ``Entity``, ``FeatureView``, ``on_demand`` and
``FeatureService``; register with ``tarmac apply``; use through ``project.features`` (a
``FeatureStore``, which returns ``TrainingSet`` and ``OnlineFeatures``).
"""

from typing import TYPE_CHECKING

from tarmac._lazy import lazy_exports
from tarmac.features.definitions import (
    Bool,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    Float32,
    Float64,
    Int32,
    Int64,
    OnDemandFeatureView,
    String,
    Timestamp,
    on_demand,
    sql,
)

if TYPE_CHECKING:
    from tarmac.features.store import FeatureStore, OnlineFeatures, TrainingSet

__all__ = ["Bool", "Entity", "Feature", "FeatureService", "FeatureStore", "FeatureView",
           "Float32", "Float64", "Int32", "Int64", "OnDemandFeatureView", "OnlineFeatures",
           "String", "Timestamp", "TrainingSet", "on_demand", "sql"]

# what the SDK hands back loads on first use: definitions.py imports this package, and must not
# pay for DuckDB, Delta and the catalog to declare a feature
_LAZY = {"FeatureStore": "tarmac.features.store", "OnlineFeatures": "tarmac.features.store",
         "TrainingSet": "tarmac.features.store"}


__getattr__ = lazy_exports(__name__, _LAZY)

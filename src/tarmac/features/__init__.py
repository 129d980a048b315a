"""The feature store: features defined once, served offline for training and online for
inference with the same values, point-in-time-correct.

Declare in ``definitions.py`` with ``Entity``, ``FeatureView``, ``StreamFeatureView`` (windowed
aggregates over a stream, built with ``agg``), ``on_demand`` and ``FeatureService``; register
with ``tarmac apply``; use through ``project.features`` (a ``FeatureStore``, which returns
``TrainingSet`` and ``OnlineFeatures``); ``StreamingFeatures`` keeps stream views up to date
online (what ``tarmac stream run`` calls).
"""

from typing import TYPE_CHECKING

from tarmac._lazy import lazy_exports
from tarmac.features import agg
from tarmac.features.definitions import (
    Aggregation,
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
    StreamFeatureView,
    String,
    Timestamp,
    on_demand,
    sliding,
    sql,
    tumbling,
)

if TYPE_CHECKING:
    from tarmac.features.store import FeatureStore, OnlineFeatures, TrainingSet
    from tarmac.features.streaming import ApplyStats, StreamingFeatures

__all__ = ["Aggregation", "ApplyStats", "Bool", "Entity", "Feature", "FeatureService",
           "FeatureStore", "FeatureView", "Float32", "Float64", "Int32", "Int64",
           "OnDemandFeatureView", "OnlineFeatures", "StreamFeatureView", "StreamingFeatures",
           "String", "Timestamp", "TrainingSet", "agg", "on_demand", "sliding", "sql",
           "tumbling"]

# what the SDK hands back loads on first use: definitions.py imports this package, and must not
# pay for DuckDB, Delta and the catalog to declare a feature
_LAZY = {"FeatureStore": "tarmac.features.store", "OnlineFeatures": "tarmac.features.store",
         "TrainingSet": "tarmac.features.store", "ApplyStats": "tarmac.features.streaming",
         "StreamingFeatures": "tarmac.features.streaming"}


__getattr__ = lazy_exports(__name__, _LAZY)

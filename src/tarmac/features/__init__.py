"""The feature store: features defined once, served offline for training and online for
inference with the same values, point-in-time-correct.

Declare in ``definitions.py`` with ``Entity``, ``FeatureView``, ``on_demand`` and
``FeatureService``; register with ``tarmac apply``; use through ``project.features``.
"""

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

__all__ = ["Bool", "Entity", "Feature", "FeatureService", "FeatureView", "Float32", "Float64",
           "Int32", "Int64", "OnDemandFeatureView", "String", "Timestamp", "on_demand", "sql"]

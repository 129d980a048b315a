"""Each package's ``__init__`` exports what users touch and get back, and nothing internal
(issue 12: "a public API that shows what users get")."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# package -> names a user touches or gets back from the SDK
PUBLIC = {
    "tarmac": ["Project", "TarmacError", "init", "open"],
    "tarmac.lake": ["Lake", "WriteResult", "query", "quote_ident"],
    "tarmac.features": ["FeatureStore", "TrainingSet", "OnlineFeatures", "Entity", "FeatureView",
                        "FeatureService", "on_demand", "StreamFeatureView", "agg", "tumbling",
                        "StreamingFeatures", "ApplyStats"],
    "tarmac.models": ["ModelRegistry", "LoadedModel", "TrainResult", "model", "label",
                      "time_split"],
    "tarmac.ingest": ["LoadResult", "IngestResults"],
    "tarmac.access": ["Erasure", "Retention", "erase"],
    "tarmac.gates": ["Report", "GateResult", "metric", "run_gates"],
    "tarmac.ledger": ["Ledger", "Verification"],
    "tarmac.catalog": ["Catalog", "Page"],
    "tarmac.serving": ["create_app"],
    "tarmac.monitoring": ["drift", "DriftReport", "ColumnDrift", "Monitoring", "THRESHOLDS"],
    "tarmac.trace": ["ModelCard", "model_card", "trace", "DecisionTrace", "FeatureUse",
                     "Explanation", "Contribution"],
    "tarmac.profile": ["profile", "profile_table", "sketch_column", "TableProfile",
                       "ColumnStats", "Histogram", "TopK"],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_package_exports_what_users_touch(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    missing = [n for n in PUBLIC[package] if n not in exported]
    assert not missing, f"{package}.__all__ lacks {missing}"
    for name in module.__all__:  # every declared name really resolves
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_the_classes_users_get_back_are_the_real_ones() -> None:
    from tarmac import features, models
    from tarmac.features.store import FeatureStore, OnlineFeatures, TrainingSet
    from tarmac.models.registry import LoadedModel, ModelRegistry
    from tarmac.models.train import TrainResult

    assert (features.FeatureStore, features.TrainingSet, features.OnlineFeatures) == \
        (FeatureStore, TrainingSet, OnlineFeatures)
    assert (models.ModelRegistry, models.LoadedModel, models.TrainResult) == \
        (ModelRegistry, LoadedModel, TrainResult)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        features.Nope  # noqa: B018


def test_lake_exports_nothing_internal() -> None:
    import tarmac.lake

    internal = {"Stager", "action_to_dict", "action_from_dict", "rows_in", "storable_type",
                "storable_schema", "write_files", "same_rows"}
    assert not internal & set(tarmac.lake.__all__)
    assert not [n for n in tarmac.lake.__all__ if n.startswith("_")]
    for name in internal:  # not reachable as attributes of the package either
        assert not hasattr(tarmac.lake, name), name
    # the cross-package seams are public modules, not private ones
    from tarmac.lake.staging import Stager, action_to_dict, rows_in  # noqa: F401
    from tarmac.lake.types import storable_type  # noqa: F401


def test_declaring_features_and_models_stays_light() -> None:
    """``definitions.py`` imports tarmac.features and tarmac.models: exporting the SDK classes
    must not make that import load the engines or scikit-learn."""
    code = ("import sys, tarmac.features, tarmac.models; "
            "print(sorted(m for m in ('duckdb', 'deltalake', 'sqlalchemy', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"

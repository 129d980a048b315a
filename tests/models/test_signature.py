"""A model's signature is enforced where it scores: types per input column, and rows without any
input value (unknown entities, stale features) are refused unless asked for."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tarmac.errors import UsageError
from tarmac.project import Project

from .conftest import LOGISTIC, definitions, redefine, signal_rows

IMPUTED = LOGISTIC.replace("from sklearn.compose", "from sklearn.impute import SimpleImputer\n"
                           "from sklearn.compose").replace(
    "(OneHotEncoder(handle_unknown=\"ignore\"), ",
    "(make_pipeline(SimpleImputer(strategy=\"constant\", fill_value=\"?\"), "
    "OneHotEncoder(handle_unknown=\"ignore\")), ").replace(
    "(\"passthrough\", ", "(SimpleImputer(), ")


@pytest.fixture
def imputing(mproject: Project) -> Project:
    """The risk model with imputers, as real models have: it scores nulls without a word."""
    assert IMPUTED != LOGISTIC
    redefine(mproject, definitions(model=IMPUTED))
    mproject.models.train("risk")
    return mproject


def test_a_value_of_the_wrong_type_names_the_column_and_the_row(imputing: Project) -> None:
    model = imputing.models.get("risk")
    frame = signal_rows(4).to_pandas()
    frame["a"] = frame["a"].astype(object)
    frame.loc[2, "a"] = "12.5 EUR"
    with pytest.raises(UsageError, match=r"input column 'a' is float64, but row 2 holds "
                                         r"'12.5 EUR' \(str\)"):
        model.predict_scores(frame)
    frame.loc[2, "a"] = "x" * 1000  # a big value is not echoed whole
    with pytest.raises(UsageError) as err:
        model.predict(frame)
    assert len(err.value.message) < 120 and "..." in err.value.message
    # numbers held as Python objects (JSON, lists of dicts) are fine, nulls too
    rows = [{"a": 1, "b": None, "region": "north"}, {"a": 0.5, "b": 2, "region": None}]
    assert model.predict_scores(rows).shape == (2,)


def test_rows_without_any_input_value_are_refused_unless_asked(imputing: Project) -> None:
    model = imputing.models.get("risk")
    frame = pd.DataFrame({"a": [0.3, None, None], "b": [1.0, None, None],
                          "region": ["north", None, None]})
    with pytest.raises(UsageError, match=r"2 of 3 rows have no value for any of the model's 3 "
                                         r"inputs, first row 1: an unknown entity"):
        model.predict_scores(frame)
    scores = model.predict_scores(frame, empty="null")
    assert scores is not None and not math.isnan(scores[0]) and np.isnan(scores[1:]).all()
    assert list(model.predict(frame, empty="null")[1:]) == [None, None]
    both = model.predict_scores(frame, empty="score")
    assert both is not None and both[1] == both[2]  # the constant score nulls get
    with pytest.raises(UsageError, match="empty='skip': expected one of error, null, score"):
        model.predict(frame, empty="skip")


def test_unknown_and_stale_entities_read_online_are_named(mproject: Project) -> None:
    mproject.models.train("risk")
    mproject.features.materialize()
    model = mproject.models.get("risk")
    online = mproject.features.online("risk", [{"customer_id": 1}, {"customer_id": 99999}])
    with pytest.raises(UsageError, match=r"1 of 2 rows .* first entity \{'customer_id': 99999\} "
                                         r"\(row 1\): the entity is unknown online"):
        model.predict_scores(online)
    assert model.predict_scores(mproject.features.online("risk", [{"customer_id": 1}])
                                ).shape == (1,)


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
def test_training_warns_about_a_feature_without_any_value(mproject: Project) -> None:
    import pyarrow as pa

    redefine(mproject, definitions(model=IMPUTED))
    signals = signal_rows()
    mproject.lake.write("signals", signals.set_column(
        signals.schema.get_field_index("b"), "b", pa.nulls(signals.num_rows, pa.float64())),
        mode="overwrite")
    result = mproject.models.train("risk")
    assert [w for w in result.warnings if "null in all" in w] == [
        "feature 'b' is null in all 480 training rows: the model learns nothing from it "
        "(stale or missing data? check its view's ttl and source)"]

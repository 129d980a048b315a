"""Tracked training runs: what is recorded, lineage, reproduction, and every way training fails."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlalchemy import select

from tarmac import faults
from tarmac.catalog import _tables as t
from tarmac.catalog import features as fcat
from tarmac.errors import TrainingError, UsageError
from tarmac.project import Project

from .conftest import FEATURES, LOGISTIC, definitions, label_rows, redefine, signal_rows


def test_train_registers_a_version_with_everything_recorded(mproject: Project) -> None:
    p = mproject
    result = p.models.train("risk", params={"C": 0.5})
    assert (result.version, result.run) == (1, 1)
    assert result.flavor == "sklearn" and result.task == "binary"
    assert result.rows_train == 480 and result.rows_test == 120
    assert result.metrics["roc_auc"] > 0.75  # the signal is learnable
    assert set(result.slices["region"]) == {"north", "south", "east"}
    assert result.inputs == {"signals": 0, "labels": 0}

    run = p.models.run(result.run_id[:8])
    assert run.status == "succeeded" and run.version == 1
    assert run.params == {"C": 0.5, "only": None}
    assert run.metrics == result.metrics
    assert run.inputs == {"signals": 0, "labels": 0}
    assert run.definitions == {"entity:customer": 1, "service:risk": 1, "view:signals": 1}
    assert "scikit-learn" in run.environment["packages"]
    assert run.fit_seconds is not None and run.seconds is not None
    assert run.fit_seconds <= run.seconds

    version = p.models.version("risk", 1)
    assert version.signature["inputs"] == [{"name": "a", "type": "float64"},
                                           {"name": "b", "type": "float64"},
                                           {"name": "region", "type": "string"}]
    assert version.signature["outputs"] == [{"name": "prediction", "type": "int64"},
                                            {"name": "score", "type": "float64"}]
    assert version.profile["a"]["count"] == 480 and "mean" in version.profile["a"]
    assert version.profile["region"]["distinct"] == 3
    # the drift sketch the monitors test against: percentile grid, every category
    assert len(version.profile["a"]["sketch"]["edges"]) == 101
    assert version.profile["region"]["sketch"]["complete"] is True
    assert p.models.artifacts.path(version.artifact).exists()
    # the version consumes its features: apply will refuse to remove them
    assert fcat.consumers_of(p.catalog, ["signals:a"])["signals:a"] == [("model:risk@1",
                                                                         "float64")]


def test_lineage_reaches_from_model_version_to_tables(mproject: Project) -> None:
    p = mproject
    p.models.train("risk")
    p.models.train("risk")
    tree = p.ledger.lineage("model:risk@2").to_dict()
    (run,) = tree["children"]  # only the run that registered v2
    assert run["name"] == "train:risk"
    (tset,) = run["children"]
    assert (tset["name"], tset["version"]) == ("training_set:risk", 2)
    (build_run,) = tset["children"]
    assert build_run["name"] == "training_set:risk"
    assert {(c["name"], c["version"]) for c in build_run["children"]} == {("signals", 0),
                                                                          ("labels", 0)}


def test_reproduce_rebuilds_the_training_set_from_recorded_versions(mproject: Project) -> None:
    p = mproject
    first = p.models.train("risk")
    # new data arrives: more customers, more labels
    more = signal_rows(200, seed=5, start=10_000)
    p.lake.write("signals", more, mode="append")
    p.lake.write("labels", label_rows(more, seed=6), mode="append")
    fresh = p.models.train("risk")
    assert fresh.rows_train + fresh.rows_test == 800
    assert fresh.metrics != first.metrics

    again = p.models.train("risk", reproduce=first.run_id)
    assert again.inputs == first.inputs == {"signals": 0, "labels": 0}
    assert again.rows_train == first.rows_train and again.rows_test == first.rows_test
    assert again.metrics == first.metrics
    assert again.reproduced_ok is True and again.reproduces == first.run_id
    assert p.models.run(again.run_id).reproduces == first.run_id
    assert again.warnings == []
    assert p.models.run(first.run_id).details["code_hash"]  # kept when the run finished
    redefine(p, definitions(model=LOGISTIC.replace("    keep =", "    # edited\n    keep =")))
    edited = p.models.train("risk", reproduce=first.run_id)
    assert edited.metrics == first.metrics
    assert any("training function changed since run" in w for w in edited.warnings)


def test_reproduce_refuses_params_and_unknown_runs(mproject: Project) -> None:
    p = mproject
    first = p.models.train("risk")
    with pytest.raises(UsageError, match="do not pass --param"):
        p.models.train("risk", params={"C": 2.0}, reproduce=first.run_id)
    with pytest.raises(UsageError, match="no training run 'ffffffff'"):
        p.models.train("risk", reproduce="ffffffff")


def test_unknown_parameter_is_refused_with_a_suggestion(mproject: Project) -> None:
    with pytest.raises(UsageError, match=r"no parameter 'c' \(known: C, only\)"):
        mproject.models.train("risk", params={"c": 2.0})


def _versions(p: Project) -> int:
    with p.catalog.engine.connect() as conn:
        return len(conn.execute(select(t.model_versions.c.version)).all())


FAILING = LOGISTIC.replace("    keep = data.param", "    raise ValueError('bad column: a')\n"
                                                    "    keep = data.param")


def test_a_raising_training_function_records_a_failed_run(mproject: Project) -> None:
    p = mproject
    redefine(p, definitions(model=FAILING))
    with pytest.raises(TrainingError, match="raised ValueError: bad column: a"):
        p.models.train("risk")
    (run,) = p.models.runs("risk")
    assert run.status == "failed" and run.version is None
    assert "Traceback" in (run.error or "") and "bad column: a" in (run.error or "")
    assert _versions(p) == 0
    ledger_run = p.ledger.get_run(run.run_id)
    assert ledger_run is not None and ledger_run.status == "failed"


def test_a_crash_after_the_fit_is_recorded(mproject: Project) -> None:
    def interrupted(**_context: object) -> None:
        raise KeyboardInterrupt

    with faults.inject("train.before_register", interrupted), pytest.raises(KeyboardInterrupt):
        mproject.models.train("risk")
    (run,) = mproject.models.runs("risk")
    assert run.status == "failed" and "KeyboardInterrupt" in (run.error or "")


def test_a_killed_training_shows_as_failed(mproject: Project) -> None:
    """The process died mid-run: the ledger marks its run failed; the training run says so."""
    from sqlalchemy import update

    p = mproject
    result = p.models.train("risk")
    with p.catalog.write() as conn:
        conn.execute(update(t.train_runs).values(status="running", ended_at=None))
        conn.execute(update(t.runs).where(t.runs.c.id == result.run_id)
                     .values(status="failed", error="the process ended before the run finished"))
    (run,) = p.models.runs("risk")
    assert run.status == "failed" and "process ended" in (run.error or "")


@pytest.mark.parametrize("returned, message", [
    ("None", "returned None .*cannot predict"),
    ("'a string'", "returned a builtins.str, which cannot predict"),
    ("lambda frame: frame[['a', 'b']]", "frame of 2 columns for 120 rows"),
    ("lambda frame: [0.5] * 3", r"predictions of shape \(3,\) for 120 rows"),
])
def test_a_model_that_cannot_predict_is_refused(mproject: Project, returned: str,
                                                message: str) -> None:
    p = mproject
    model = ('@model(name="risk", features="risk", label=label("labels", "churned", '
             'timestamp="observed"), split=time_split(by="known_at"))\n'
             f"def train(data):\n    return {returned}\n")
    redefine(p, FEATURES + model)
    with pytest.raises(TrainingError, match=message):
        p.models.train("risk")
    assert p.models.runs("risk")[0].status == "failed"
    assert _versions(p) == 0


def test_a_python_function_is_a_flavor(mproject: Project) -> None:
    p = mproject
    model = ('@model(name="risk", features="risk", label=label("labels", "churned", '
             'timestamp="observed"), split=time_split(by="known_at"))\n'
             "def train(data):\n"
             "    import numpy as np\n"
             "    return lambda frame: 1 / (1 + np.exp(-(1.8 * frame['a'] - 1.2 * frame['b'])))\n")
    redefine(p, FEATURES + model)
    result = p.models.train("risk")
    assert result.flavor == "python_function" and result.task == "binary"
    assert result.metrics["roc_auc"] > 0.75
    loaded = p.models.get("risk", result.version)  # by value: loads without definitions.py
    frame = signal_rows(4).to_pandas()
    assert loaded.predict_scores(frame).shape == (4,)
    assert set(loaded.predict(frame)) <= {0, 1}


def test_lightgbm_is_detected_when_installed(mproject: Project) -> None:
    pytest.importorskip("lightgbm")
    p = mproject
    model = ('@model(name="risk", features="risk", label=label("labels", "churned", '
             'timestamp="observed"), split=time_split(by="known_at"))\n'
             "def train(data):\n"
             "    from lightgbm import LGBMClassifier\n"
             "    from sklearn.compose import make_column_transformer\n"
             "    from sklearn.pipeline import make_pipeline\n"
             "    from sklearn.preprocessing import OrdinalEncoder\n"
             "    encode = make_column_transformer((OrdinalEncoder(), ['region']),\n"
             "                                     remainder='passthrough')\n"
             "    return make_pipeline(encode, LGBMClassifier(n_estimators=30, verbose=-1))"
             ".fit(data.X, data.y)\n")
    redefine(p, FEATURES + model)
    result = p.models.train("risk")
    assert result.flavor == "lightgbm" and result.metrics["roc_auc"] > 0.7
    assert "lightgbm" in p.models.run(result.run_id).environment["packages"]
    assert p.models.get("risk").predict(signal_rows(3).to_pandas()).shape == (3,)


def test_label_table_missing(mproject: Project) -> None:
    p = mproject
    redefine(p, definitions().replace('label("labels"', 'label("lables"'))
    with pytest.raises(UsageError, match="label table 'lables' does not exist.*'labels'"):
        p.models.train("risk")
    assert p.models.runs("risk") == []


def test_label_column_or_time_missing(mproject: Project) -> None:
    p = mproject
    redefine(p, definitions().replace('"churned", timestamp="observed"',
                                      '"churn", timestamp="observed"'))
    with pytest.raises(UsageError, match="has no column 'churn'.*'churned'"):
        p.models.train("risk")
    redefine(p, definitions().replace('timestamp="observed"', 'timestamp="seen"'))
    with pytest.raises(UsageError, match="timestamp column 'seen' is missing"):
        p.models.train("risk")
    redefine(p, definitions().replace(', timestamp="observed"', ""))
    with pytest.raises(UsageError, match="it has observed, known_at"):
        p.models.train("risk")


def test_labels_with_no_overlap(mproject: Project) -> None:
    p = mproject
    strangers = label_rows(signal_rows(50, start=90_000))
    p.lake.write("labels", strangers, mode="overwrite")
    with pytest.raises(UsageError, match="none of the 50 label rows matched any feature value"):
        p.models.train("risk")


def test_empty_label_table_and_empty_split(mproject: Project) -> None:
    p = mproject
    p.lake.write("labels", label_rows(signal_rows()).slice(0, 0), mode="overwrite")
    with pytest.raises(UsageError, match="label table 'labels' has no rows"):
        p.models.train("risk")
    p.lake.write("labels", label_rows(signal_rows()).slice(0, 1), mode="overwrite")
    with pytest.raises(TrainingError, match="leaves 0 training and 1 holdout rows"):
        p.models.train("risk")


def test_null_labels_are_left_out_and_said_so(mproject: Project) -> None:
    p = mproject
    labels = label_rows(signal_rows())
    churned = labels.column("churned").to_pylist()
    churned[:10] = [None] * 10
    p.lake.write("labels", labels.set_column(3, "churned", pa.array(churned, pa.int64())),
                 mode="overwrite")
    result = p.models.train("risk")
    assert result.rows_train + result.rows_test == 590
    assert any("10 label rows with a null label" in w for w in result.warnings)


def test_unknown_model_name(mproject: Project) -> None:
    with pytest.raises(UsageError, match="no model named 'rsik'.*'risk'"):
        mproject.models.train("rsik")


def test_time_split_forms() -> None:
    from tarmac.models import time_split

    assert time_split("last 25%").fraction == 0.25
    assert time_split("last 30d").span is not None
    for bad in ("20%", "last 0%", "last 100%", "last forever", "first 10%"):
        with pytest.raises(UsageError, match="time_split"):
            time_split(bad)

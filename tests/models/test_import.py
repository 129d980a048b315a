"""Importing models trained elsewhere, as a team moving from MLflow would: real models saved by
MLflow and converted to ONNX, registered, loaded through the same hash-checked path as trained
versions, scored in batch; and a clear error for each kind of bad source."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.errors import ArtifactError, UsageError
from tarmac.project import Project


def need(package: str) -> None:
    """Skip when an optional package is missing (a laptop), fail under CI where it must run."""
    if importlib.util.find_spec(package) is None:
        message = f"{package} is not installed (pip install 'tarmac[dev]')"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI must exercise model imports")
        pytest.skip(message)


def _data(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return x, ((x["a"] - 0.5 * x["b"] + rng.normal(scale=0.3, size=n)) > 0).astype(np.int64)


def _fitted() -> tuple[Any, pd.DataFrame]:
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    return LogisticRegression().fit(x, y), x


def _save_sklearn(path: Path, *, signature: bool = True) -> tuple[Any, pd.DataFrame]:
    need("mlflow")
    import mlflow.sklearn
    from mlflow.models import infer_signature

    est, x = _fitted()
    mlflow.sklearn.save_model(est, str(path), serialization_format="cloudpickle",
                              signature=infer_signature(x, est.predict(x)) if signature else None)
    return est, x


@pytest.fixture(scope="module")
def saved_sklearn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One saved MLflow scikit-learn model for the tests that only read it."""
    path = tmp_path_factory.mktemp("mlflow") / "m"
    _save_sklearn(path)
    return path


def test_an_mlflow_sklearn_model_directory_is_registered_and_scores(mproject: Project,
                                                                     tmp_path: Path) -> None:
    p = mproject
    est, x = _save_sklearn(tmp_path / "churn_model")
    record = p.models.import_model(tmp_path / "churn_model", "churn", description="from MLflow")
    assert (record.version, record.flavor, record.task) == (1, "sklearn", "binary")
    assert record.signature["inputs"] == [{"name": "a", "type": "float64"},
                                          {"name": "b", "type": "float64"}]
    assert record.spec["imported"]["format"] == "mlflow" and record.spec["classes"] == [0, 1]
    loaded = p.models.get("churn", 1)
    assert np.allclose(loaded.predict_scores(x), est.predict_proba(x)[:, 1])
    assert (loaded.predict(x) == est.predict(x)).all()
    audit = [r for r in p.ledger.audit() if r.action == "model.register"]
    assert audit[-1].target == "model:churn" and json.loads(audit[-1].details)["version"] == 1
    run = p.ledger.get_run(record.run_id)
    assert run is not None and run.job == "import:churn" and run.status == "succeeded"

    # promoted by hand (no gates for an imported version), then scored in batch
    p.models.promote("churn", 1, force=True, reason="moved over from MLflow")
    p.lake.write("customers", pd.DataFrame({"customer_id": range(len(x)), **x}))
    result = p.models.score("churn", "customers", "churn_scores")
    assert (result.rows_in, result.rows_scored, result.features) == (300, 300, "input")
    out = p.lake.read("churn_scores").to_pandas().sort_values("customer_id")
    assert np.allclose(out["score"], est.predict_proba(x)[:, 1])


def test_an_altered_imported_artifact_is_refused(mproject: Project, tmp_path: Path) -> None:
    _save_sklearn(tmp_path / "m")
    record = mproject.models.import_model(str(tmp_path / "m"), "churn")
    blob = mproject.models.artifacts.path(record.artifact)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"x")
    with pytest.raises(ArtifactError, match="was altered"):
        mproject.models.get("churn", 1)


def test_a_generic_pyfunc_model_loads_through_mlflow(mproject: Project, tmp_path: Path) -> None:
    need("mlflow")
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return model_input["a"] * 2.0 + model_input["b"]

    sig = ModelSignature(inputs=Schema([ColSpec("double", "a"), ColSpec("double", "b")]),
                         outputs=Schema([ColSpec("double")]))
    mlflow.pyfunc.save_model(str(tmp_path / "doubler"), python_model=Doubler(), signature=sig)
    record = mproject.models.import_model(str(tmp_path / "doubler"), "doubler")
    assert (record.flavor, record.task) == ("mlflow", "regression")
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [0.5, -1.0]})
    assert mproject.models.get("doubler", 1).predict(frame).tolist() == [2.5, 3.0]
    # the same bytes make the same artifact: importing twice stores one blob
    again = mproject.models.import_model(str(tmp_path / "doubler"), "doubler")
    assert again.version == 2 and again.artifact == record.artifact


def test_a_models_uri_resolves_through_the_tracking_server(mproject: Project, tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    need("mlflow")
    import mlflow
    import mlflow.sklearn

    monkeypatch.chdir(tmp_path)  # MLflow writes its artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    est, x = _fitted()
    with mlflow.start_run():
        mlflow.sklearn.log_model(est, name="model", registered_model_name="churn",
                                 serialization_format="cloudpickle")
    # logged without a signature: it must be given
    with pytest.raises(UsageError, match="does not say which columns the model takes"):
        mproject.models.import_model("models:/churn/1", "churn")
    record = mproject.models.import_model("models:/churn/1", "churn", signature="a,b")
    assert record.spec["imported"]["uri"] == "models:/churn/1"
    assert np.allclose(mproject.models.get("churn", 1).predict_scores(x),
                       est.predict_proba(x)[:, 1])
    with pytest.raises(UsageError, match=r"MLflow could not resolve models:/nope/1 \(tracking "
                                         r"URI sqlite:.*not found"):
        mproject.models.import_model("models:/nope/1", "churn", signature="a,b")


def _onnx_file(path: Path, *, zipmap: bool = False) -> tuple[Any, pd.DataFrame]:
    need("onnxruntime")
    need("skl2onnx")
    from skl2onnx import to_onnx

    est, x = _fitted()
    model = to_onnx(est, x.to_numpy(dtype=np.float32)[:1], options={"zipmap": zipmap})
    path.write_bytes(model.SerializeToString())
    return est, x


@pytest.mark.parametrize("zipmap", [False, True], ids=["tensor", "zipmap"])
def test_an_onnx_model_is_registered_and_scores(mproject: Project, tmp_path: Path,
                                                zipmap: bool) -> None:
    p = mproject
    est, x = _onnx_file(tmp_path / "churn.onnx", zipmap=zipmap)
    with pytest.raises(UsageError, match="does not say which columns"):
        p.models.import_model(tmp_path / "churn.onnx", "churn")
    record = p.models.import_model(tmp_path / "churn.onnx", "churn",
                                   signature="a:float64,b:float64")
    assert (record.flavor, record.task, record.spec["classes"]) == ("onnx", "binary", [0, 1])
    loaded = p.models.get("churn", 1)
    assert np.allclose(loaded.predict_scores(x), est.predict_proba(x)[:, 1], atol=1e-5)
    assert (loaded.predict(x) == est.predict(x)).all()
    p.lake.write("customers", pd.DataFrame({"customer_id": range(len(x)), **x}))
    result = p.models.score("churn", "customers", "scores", version=1)
    assert result.rows_scored == 300
    out = p.lake.read("scores").to_pandas().sort_values("customer_id")
    assert np.allclose(out["score"], est.predict_proba(x)[:, 1], atol=1e-5)
    assert (out["label"].to_numpy() == est.predict(x)).all()


def test_import_from_the_command_line(mproject: Project, tmp_path: Path) -> None:
    _save_sklearn(tmp_path / "m")
    runner = CliRunner()
    result = runner.invoke(app, ["--project", str(mproject.root), "models", "import",
                                 str(tmp_path / "m"), "--name", "churn"])
    assert result.exit_code == 0, result.output
    assert "registered churn v1 (sklearn binary)" in result.output
    assert "inputs: a:float64, b:float64" in result.output
    result = runner.invoke(app, ["--project", str(mproject.root), "models", "import",
                                 str(tmp_path), "--name", "churn"])
    assert result.exit_code == 2 and "has no MLmodel file" in result.output


# -- bad sources -------------------------------------------------------------------------------


def test_a_path_that_is_not_a_model(mproject: Project, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="is not an MLflow model directory: it has no MLmodel"):
        mproject.models.import_model(tmp_path, "churn")
    with pytest.raises(UsageError, match="is not a model: expected an MLflow model directory"):
        mproject.models.import_model(tmp_path / "notes.txt", "churn")
    with pytest.raises(UsageError, match="does not exist"):
        mproject.models.import_model(tmp_path / "missing", "churn")
    assert mproject.models.names() == {}


def test_an_mlmodel_without_a_python_function_flavor(mproject: Project, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors:\n  keras:\n    keras_version: 3.0\n")
    with pytest.raises(UsageError, match=r"has no python_function flavor \(its flavors: keras\)"):
        mproject.models.import_model(folder, "churn")
    (folder / "MLmodel").write_text("flavors: [oops\n")
    with pytest.raises(UsageError, match="is not valid YAML"):
        mproject.models.import_model(folder, "churn")


def test_an_unknown_models_uri(mproject: Project, tmp_path: Path, monkeypatch: Any) -> None:
    need("mlflow")
    import mlflow.tracking

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(mlflow.tracking, "is_tracking_uri_set", lambda: False)
    with pytest.raises(UsageError, match="MLFLOW_TRACKING_URI is not set"):
        mproject.models.import_model("models:/ghost/3", "churn", signature="a,b")
    assert not (tmp_path / "mlflow.db").exists()  # no tracking store made up on the way
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(UsageError, match="MLflow could not resolve models:/ghost/3"):
        mproject.models.import_model("models:/ghost/3", "churn", signature="a,b")


def test_a_corrupted_onnx_file(mproject: Project, tmp_path: Path) -> None:
    need("onnxruntime")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf graph")
    with pytest.raises(UsageError, match=r"broken.onnx: not a valid ONNX model"):
        mproject.models.import_model(bad, "churn", signature="a,b")
    good = tmp_path / "good.onnx"
    _onnx_file(good)
    good.write_bytes(good.read_bytes()[:200])  # cut short
    with pytest.raises(UsageError, match="not a valid ONNX model"):
        mproject.models.import_model(good, "churn", signature="a,b")


@pytest.mark.parametrize(("signature", "message"), [
    ("a:float65", "signature column 'a' has type 'float65'"),
    ("a,a", r"names column\(s\) a twice"),
    (" , ", "the signature names no column"),
])
def test_a_bad_signature(mproject: Project, saved_sklearn: Path, signature: str,
                         message: str) -> None:
    with pytest.raises(UsageError, match=message):
        mproject.models.import_model(saved_sklearn, "churn", signature=signature)
    from tarmac.catalog import models as mcat

    assert not mcat.versions(mproject.catalog, "churn", limit=10)  # nothing registered


def test_a_bad_model_name_or_task(mproject: Project, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="model name 'no good' is not valid"):
        mproject.models.import_model(tmp_path, "no good")
    with pytest.raises(UsageError, match="task 'ranking'"):
        mproject.models.import_model(tmp_path, "churn", task="ranking")


def test_an_onnx_graph_with_one_input_per_column(mproject: Project, tmp_path: Path) -> None:
    """A graph that names its inputs after the columns carries its own signature; one output
    and no probabilities make it a regression."""
    need("onnxruntime")
    need("onnx")
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [None, 1])
              for n in ("tenure", "spend")]
    output = helper.make_tensor_value_info("value", TensorProto.DOUBLE, [None, 1])
    graph = helper.make_graph([helper.make_node("Add", ["tenure", "spend"], ["value"])],
                              "add", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (tmp_path / "add.onnx").write_bytes(model.SerializeToString())
    record = mproject.models.import_model(tmp_path / "add.onnx", "adder")
    assert record.task == "regression" and record.signature["inputs"] == [
        {"name": "tenure", "type": "float64"}, {"name": "spend", "type": "float64"}]
    frame = pd.DataFrame({"spend": [1.5, 2.0], "tenure": [10.0, 20.0]})  # any column order
    assert mproject.models.get("adder", 1).predict(frame).tolist() == [11.5, 22.0]


def test_an_imported_version_of_a_declared_model_is_a_version_like_a_trained_one(
        mproject: Project, saved_sklearn: Path) -> None:
    """Imported under a model definitions.py declares, a version gets what training would give
    it from the declaration (built today): the holdout rows, the spec (features, keys, label,
    split, gates) and the reference profile. So it is validated like a trained version,
    promoted without --force, and served by entity."""
    p = mproject  # declares 'risk' (features a, b, region; gates on roc_auc and by region)
    record = p.models.import_model(saved_sklearn, "risk")
    assert record.spec["features"] == "risk" and record.spec["keys"] == ["customer_id"]
    assert record.spec["label"]["column"] == "churned" and record.spec["imported"]
    assert len(p.models.holdout(record)) == 120 and set(record.profile) >= {"a", "b"}
    report = p.models.validate("risk", record.version)
    assert report.status == "passed", report.to_dict()
    roc = next(r for r in report.results if r.kind == "metric")
    assert roc.value is not None and roc.value >= 0.7  # scored on the real holdout
    change = p.models.promote("risk", record.version)
    assert change.changed and change.to_version == record.version and not change.forced
    p.features.materialize()
    answer = p.serving.predict("risk", entities=[{"customer_id": 1}])["predictions"][0]
    assert answer["model"] == "risk@1" and 0 <= answer["score"] <= 1
    assert set(answer["features"]["status"].values()) == {"present"}


def test_an_import_whose_inputs_the_declaration_lacks_is_refused(
        mproject: Project, saved_sklearn: Path) -> None:
    from models.conftest import redefine

    p = mproject
    text = (p.root / "definitions.py").read_text()
    redefine(p, text.replace('Feature("b", Float64), ', ""))  # the view no longer gives 'b'
    p.features.apply()
    with pytest.raises(UsageError, match=r"the model takes input\(s\) b that the declared "
                                         r"features of 'risk'"):
        p.models.import_model(saved_sklearn, "risk")
    from tarmac.catalog import models as mcat

    assert not mcat.versions(p.catalog, "risk", limit=10)  # nothing registered


def test_an_import_declared_later_is_validated_on_the_declarations_holdout(
        mproject: Project, saved_sklearn: Path) -> None:
    """Imported before its model was declared: validate builds the holdout the declaration
    gives today and says so in the audit trail."""
    from models.conftest import redefine

    p = mproject
    record = p.models.import_model(saved_sklearn, "late")  # not declared: no gates to run
    with pytest.raises(UsageError, match="no model named 'late'"):
        p.models.validate("late", record.version)
    text = (p.root / "definitions.py").read_text()
    redefine(p, text + "\n\n@model(name=\"late\", features=\"risk\", label=label(\"labels\", "
                       "\"churned\", timestamp=\"observed\"), split=time_split(test=\"last 20%\", "
                       "by=\"known_at\"), gates=[metric(\"roc_auc\") >= 0.7])\n"
                       "def train_late(data):\n    raise NotImplementedError\n")
    report = p.models.validate("late", record.version)
    assert report.status == "passed", report.to_dict()
    audit = [r for r in p.ledger.audit() if r.action == "model.validate"][-1]
    assert json.loads(audit.details)["holdout"].startswith("declared: 120 rows")

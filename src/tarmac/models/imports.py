"""Importing models trained elsewhere: an MLflow model (a directory or a ``models:/`` URI) or an
ONNX file becomes a registered Tarmac version, so a team on MLflow moves over without retraining.

* An MLflow model directory has an ``MLmodel`` file; it must have a ``python_function`` flavor
  (the one every MLflow tool can load). One that also has a ``sklearn`` flavor stored as a
  (cloud)pickle is imported as a native ``sklearn`` version: the estimator itself is stored, so
  it loads without MLflow and its class probabilities score. Any other pyfunc model is stored
  whole (a zip of the directory) as flavor ``mlflow`` and loads through ``mlflow.pyfunc``.
* ``models:/NAME/VERSION`` (or ``models:/NAME@ALIAS``) is downloaded through MLflow from
  ``MLFLOW_TRACKING_URI``; it needs the ``mlflow`` package (``tarmac[mlflow]``).
* ``*.onnx`` is stored as it is (flavor ``onnx``, run by ``onnxruntime``: ``tarmac[onnx]``).

The signature comes from the MLmodel's column signature, or from an ONNX graph whose inputs are
named after the columns; otherwise it must be given (``"a:float64,b:float64,region:string"``).
The artifact is content-addressed like a trained one, so ``ModelRegistry.get`` checks its
hash on every load. Registering is a governed run ``import:NAME`` (lineage ``SOURCE -> run ->
model:NAME@V``) with a ``model.register`` audit record. When ``definitions.py`` declares the
model, the version gets what training would give it from that declaration (built today): the
holdout rows, the spec (features, keys, label, split, gates) and the reference profile, so it
is validated, promoted and served by entity like a trained one. An undeclared one has no gates:
promote it with ``--force --reason`` (audited).

Example::

    p.models.import_model("mlruns/0/abc/artifacts/model", "churn")
    p.models.import_model("models:/churn/3", "churn")
    p.models.import_model("churn.onnx", "churn", signature="tenure:float64,spend:float64")
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from sqlalchemy.exc import IntegrityError

from tarmac.catalog import DatasetVersion, now_us
from tarmac.catalog import models as mcat
from tarmac.errors import ConflictError, TarmacError, UsageError
from tarmac.features.definitions import TYPES
from tarmac.models import flavors
from tarmac.models.signature import Signature

if TYPE_CHECKING:
    from tarmac.models.registry import ModelRegistry
    from tarmac.models.train import Declared

TASKS = ("binary", "multiclass", "regression")
MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")  # as @model(name=...) takes
# MLflow column types -> Tarmac value types
MLFLOW_TYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32",
                "boolean": "bool", "string": "string", "datetime": "timestamp"}
_ONNX_SIGNATURE = {"tensor(float)": "float32", "tensor(double)": "float64",
                   "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool",
                   "tensor(string)": "string"}
SignatureLike = str | Signature | Sequence[tuple[str, str]] | None


@dataclass(frozen=True)
class _Imported:
    """What an import found: the object to store, how it loads, and what it takes."""

    flavor: str
    blob: bytes
    task: str
    classes: list[Any] | None
    inputs: list[tuple[str, str]] | None
    prediction: str
    source: dict[str, Any]


def import_model(registry: ModelRegistry, source: str | os.PathLike[str], name: str, *,
                 signature: SignatureLike = None, task: str | None = None,
                 description: str | None = None) -> mcat.ModelVersion:
    """Register ``source`` (an MLflow model directory, a ``models:/`` URI or an ``.onnx``
    file) as the next version of ``name``; returns the registered version."""
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise UsageError(f"model name {name!r} is not valid: use letters, digits and '_', "
                         "starting with a letter (at most 63 characters)")
    if task is not None and task not in TASKS:
        raise UsageError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    given = parse_signature(signature) if signature is not None else None
    text = os.fspath(source)
    if text.startswith("models:/"):
        with tempfile.TemporaryDirectory(prefix="tarmac-mlflow-") as tmp:
            found = _mlflow_dir(Path(_download(text, tmp)), task, uri=text)
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise UsageError(f"{text} does not exist: give an MLflow model directory, a "
                             "models:/NAME/VERSION URI or an .onnx file")
        if path.is_file() and path.suffix.lower() == ".onnx":
            found = _onnx(path, task)
        elif path.is_file() and path.name == "MLmodel":
            found = _mlflow_dir(path.parent, task, uri=str(path.parent))
        elif path.is_dir():
            found = _mlflow_dir(path, task, uri=str(path))
        else:
            raise UsageError(f"{text} is not a model: expected an MLflow model directory (with "
                             "an MLmodel file), a models:/ URI or an .onnx file")
    inputs = given.inputs if given is not None else found.inputs
    if not inputs:
        raise UsageError(f"{text} does not say which columns the model takes (no column "
                         "signature in it): give one",
                         hint='--signature "tenure:float64,plan:string" (or signature=...)')
    outputs = [("prediction", found.prediction)]
    if found.task == "binary":
        outputs.append(("score", "float64"))
    signature_ = Signature(list(inputs), outputs)
    return _register(registry, name, found, signature_, description, text,
                     _declaration(registry, name, signature_))


def _declaration(registry: ModelRegistry, name: str, signature: Signature) -> Declared | None:
    """What ``definitions.py``'s declaration of ``name`` gives an imported version (None when
    the project has no definitions file or does not declare it); its inputs must be features
    the declaration gives."""
    if not registry.project.features.definitions_path.is_file():
        return None
    definition = registry.declared().get(name)  # a broken definitions file: its error
    if definition is None:
        return None
    from tarmac.models.train import declared

    found = declared(registry.project, definition)
    missing = [c for c in signature.input_names if c not in found.holdout.columns]
    if missing:
        raise UsageError(
            f"the model takes input(s) {', '.join(missing)} that the declared features of "
            f"'{name}' ({definition.features}) do not give: a version of '{name}' must take "
            "declared features",
            hint=f"import it under another name, or declare features that include "
                 f"{', '.join(missing)}")
    return found


def parse_signature(value: SignatureLike) -> Signature:
    """``"a:float64,b:string"`` (a bare name is float64), a list of (name, type) or a
    ``Signature``: the inputs, each type one of Tarmac's value types."""
    if isinstance(value, Signature):
        return value
    if isinstance(value, str):
        pairs = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            column, _, kind = part.partition(":")
            pairs.append((column.strip(), kind.strip() or "float64"))
    else:
        pairs = [(str(c), str(t)) for c, t in (value or [])]
    if not pairs:
        raise UsageError("the signature names no column",
                         hint='--signature "tenure:float64,plan:string"')
    for column, kind in pairs:
        if not column:
            raise UsageError(f"the signature has an empty column name ({value!r})")
        if kind not in TYPES:
            raise UsageError(f"signature column '{column}' has type {kind!r}: expected one of "
                             f"{', '.join(TYPES)}")
    names = [c for c, _ in pairs]
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise UsageError(f"the signature names column(s) {', '.join(twice)} twice")
    return Signature(pairs, [])


# -- MLflow ------------------------------------------------------------------------------------


def _download(uri: str, into: str) -> str:
    """A ``models:/`` URI's files, through MLflow and the tracking server it is set up for."""
    try:
        import mlflow
        import mlflow.artifacts
    except ImportError:
        raise UsageError(f"resolving {uri} needs the mlflow package, which is not installed",
                         hint="pip install 'tarmac[mlflow]' and set MLFLOW_TRACKING_URI; or "
                              "import the model's directory instead") from None
    from mlflow.tracking import is_tracking_uri_set

    if not is_tracking_uri_set():  # MLflow would make a new, empty ./mlflow.db and look there
        raise UsageError(f"resolving {uri} needs to know where the MLflow tracking server "
                         "is: MLFLOW_TRACKING_URI is not set",
                         hint="export MLFLOW_TRACKING_URI=http://mlflow:5000 (or sqlite:///"
                              "path/to/mlflow.db)")
    try:
        return str(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=into))
    except Exception as exc:
        where = os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"MLflow could not resolve {uri} (tracking URI {where}): {first}",
                         hint="check the name and version with the MLflow UI or "
                              "`mlflow models` at that tracking URI") from None


def _mlflow_dir(path: Path, task: str | None, *, uri: str) -> _Imported:
    spec_file = path / "MLmodel"
    if not spec_file.is_file():
        raise UsageError(f"{path} is not an MLflow model directory: it has no MLmodel file",
                         hint="point at the folder mlflow.<flavor>.save_model wrote (the one "
                              "holding MLmodel), or at an .onnx file")
    try:
        spec = yaml.safe_load(spec_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{spec_file} is not valid YAML: {exc}") from None
    found = (spec or {}).get("flavors") if isinstance(spec, dict) else None
    if not isinstance(found, dict) or "python_function" not in found:
        have = ", ".join(found) if isinstance(found, dict) and found else "none"
        raise UsageError(f"{spec_file} has no python_function flavor (its flavors: {have}): "
                         "Tarmac imports MLflow models that MLflow itself can load as pyfunc",
                         hint="save it with mlflow.<flavor>.save_model or mlflow.pyfunc")
    inputs, prediction = _mlflow_signature(spec.get("signature"), spec_file)
    source = {"format": "mlflow", "uri": uri, "flavors": sorted(found),
              "run_id": spec.get("run_id"), "mlflow_version": spec.get("mlflow_version")}
    sk = found.get("sklearn")
    if isinstance(sk, dict) and sk.get("serialization_format", "cloudpickle") in (
            "cloudpickle", "pickle") and sk.get("pickled_model"):
        estimator = flavors.loads((path / sk["pickled_model"]).read_bytes())
        chosen = task or flavors.task_of(estimator, pd.Series([], dtype="float64"))
        classes = getattr(estimator, "classes_", None)
        listed = None if classes is None else [c.item() if hasattr(c, "item") else c
                                               for c in classes]
        if listed is not None and prediction == "float64":
            prediction = _value_type(listed)
        return _Imported("sklearn", flavors.dumps(estimator), chosen, listed, inputs,
                         prediction, source)
    chosen = task or ("regression" if prediction.startswith("float") else "multiclass")
    return _Imported("mlflow", _zip(path), chosen, None, inputs, prediction, source)


def _mlflow_signature(signature: Any, where: Path) -> tuple[list[tuple[str, str]] | None, str]:
    """The column signature of an MLmodel (None when it has none, or a tensor one)."""
    if not isinstance(signature, dict):
        return None, "float64"
    try:
        columns = json.loads(signature.get("inputs") or "[]")
        outputs = json.loads(signature.get("outputs") or "[]")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: its signature is not valid JSON: {exc}") from None
    prediction = "float64"
    if outputs and isinstance(outputs[0], dict) and outputs[0].get("type") in MLFLOW_TYPES:
        prediction = MLFLOW_TYPES[outputs[0]["type"]]
    if not columns or any(not isinstance(c, dict) or "name" not in c for c in columns):
        return None, prediction  # a tensor signature: its inputs have no column names
    inputs = []
    for column in columns:
        kind = MLFLOW_TYPES.get(column.get("type", ""))
        if kind is None:
            raise UsageError(f"{where}: input column '{column['name']}' has MLflow type "
                             f"{column.get('type')!r}, which Tarmac cannot check (types: "
                             f"{', '.join(MLFLOW_TYPES)})",
                             hint="give the signature yourself with --signature")
        inputs.append((str(column["name"]), kind))
    return inputs, prediction


def _zip(path: Path) -> bytes:
    """The directory as a zip with fixed timestamps: the same files give the same artifact."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(file.relative_to(path).as_posix(), (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())
    return out.getvalue()


def _value_type(values: list[Any]) -> str:
    from tarmac.features.definitions import type_of

    return type_of(pa.array(values).type) or "string"


# -- ONNX --------------------------------------------------------------------------------------


def _onnx(path: Path, task: str | None) -> _Imported:
    data = path.read_bytes()
    try:
        model = flavors.OnnxModel(data)
    except TarmacError as exc:
        raise UsageError(f"{path}: {exc.message}", hint=exc.hint) from None
    inputs = None
    if len(model.inputs) > 1:  # one input per column: the graph names the columns
        inputs = [(i.name, _ONNX_SIGNATURE.get(i.type, "float64")) for i in model.inputs]
    classes = _onnx_classes(data)
    probabilities = len(model.outputs) > 1
    if task is None:
        if not probabilities:
            task = "regression"
        else:
            task = "binary" if classes is not None and len(classes) == 2 else (
                "multiclass" if classes is not None else "binary")
    outputs = model.session.get_outputs()
    prediction = _ONNX_SIGNATURE.get(outputs[0].type, "float64")
    if classes is not None:
        prediction = _value_type(classes)
    return _Imported("onnx", data, task, classes, inputs, prediction,
                     {"format": "onnx", "uri": str(path), "outputs": model.outputs})


def _onnx_classes(data: bytes) -> list[Any] | None:
    """A classifier graph's class labels (the ``classlabels_*`` attribute skl2onnx and other
    converters write), read with the ``onnx`` package when it is installed."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        return None
    try:
        graph = onnx.load_model_from_string(data).graph
    except Exception:
        return None
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in ("classlabels_int64s", "classlabels_strings", "classlabels_ints"):
                values = helper.get_attribute_value(attr)
                return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


# -- registering -------------------------------------------------------------------------------


def _insert(conn: Any, mv: mcat.ModelVersion, refs: dict[str, str] | None) -> None:
    """The version's row; with declared features, the version is recorded as their consumer."""
    mcat.insert_version(conn, mv)
    if refs is not None:
        from tarmac.catalog import features as fcat

        fcat.set_consumer(conn, f"model:{mv.model}@{mv.version}", refs)


def _register(registry: ModelRegistry, name: str, found: _Imported, signature: Signature,
              description: str | None, source: str, declared: Declared | None
              ) -> mcat.ModelVersion:
    project = registry.project
    artifact = registry.artifacts.put(found.blob)
    sink = io.BytesIO()
    spec: dict[str, Any] = {"imported": found.source, "classes": found.classes}
    profile: dict[str, Any] = {}
    if declared is not None:  # a version of a declared model: its holdout, spec and profile
        pq.write_table(pa.Table.from_pandas(declared.holdout, preserve_index=False), sink)
        spec = {**declared.spec, **spec}
        profile = declared.profile
    else:
        pq.write_table(pa.schema([pa.field(c, TYPES[t]) for c, t in signature.inputs])
                       .empty_table(), sink)
    holdout = registry.artifacts.put(sink.getvalue())
    # the artifact's hash is checked on every load; load it now so a broken file is refused here
    registry_obj = flavors.load(found.flavor, found.blob, registry.artifacts.root / "unpacked"
                                / artifact)
    del registry_obj
    with project.ledger.run(f"import:{name}", params={"source": source,
                                                      "flavor": found.flavor}) as run:
        run.add_input(f"{found.source['format']}:{source}", None)
        for _ in range(5):
            with project.catalog.engine.connect() as conn:
                version = mcat.next_version(conn, name)
            record = mcat.ModelVersion(
                model=name, version=version, run_id=run.id, flavor=found.flavor,
                task=found.task, artifact=artifact, holdout=holdout,
                signature=signature.to_dict(), spec=spec, created_at=now_us(),
                actor=project.ledger.actor, description=description, profile=profile,
                tags={"imported_from": found.source["format"]})
            try:
                project.ledger.commit(
                    "model.register", f"model:{name}",
                    {"version": version, "flavor": found.flavor, "artifact": artifact,
                     "imported": found.source},
                    change=partial(_insert, mv=record,
                                   refs=declared.refs if declared is not None else None),
                    run=run,
                    output=DatasetVersion(f"model:{name}", version))
                return record
            except IntegrityError:
                continue
    raise ConflictError(f"could not number a version of '{name}': too many concurrent imports")


__all__ = ["import_model", "parse_signature"]

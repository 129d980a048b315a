"""Flavors: how a trained object predicts, detected from what the training function returned.

* ``sklearn`` — anything with scikit-learn's estimator API (``predict``, and ``predict_proba``
  for classifiers); LightGBM and XGBoost estimators are recognised by their package and keep
  their own flavor name so the environment records the right library.
* ``python_function`` — a plain function ``frame -> predictions``.
* ``onnx`` — an ONNX graph (``tarmac models import model.onnx``), run by ``onnxruntime`` (the
  optional extra ``tarmac[onnx]``) behind the same estimator API (``OnnxModel``).
* ``mlflow`` — an MLflow pyfunc model directory without a scikit-learn flavor, stored as a zip
  and loaded through ``mlflow.pyfunc`` (the optional extra ``tarmac[mlflow]``). An MLflow model
  that has a scikit-learn flavor is imported as ``sklearn`` and needs no MLflow to load.

Artifacts are pickled with cloudpickle, with the user's definitions module pickled by value: the
definitions file is imported under a generated module name, so a function or transformer defined
there would otherwise not load in another process.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tarmac.errors import ArtifactError, TrainingError

PACKAGE_FLAVORS = {"lightgbm": "lightgbm", "xgboost": "xgboost", "catboost": "catboost"}


def detect(obj: Any) -> str:
    """The flavor of a trained object; refuses one that cannot predict."""
    if hasattr(obj, "predict") and callable(obj.predict):
        steps = getattr(obj, "steps", None)  # a Pipeline is named after its final estimator
        last = steps[-1][1] if isinstance(steps, list) and steps else obj
        top = type(last).__module__.split(".")[0]
        return PACKAGE_FLAVORS.get(top, "sklearn")
    if callable(obj) and not isinstance(obj, type):
        return "python_function"
    raise TrainingError(
        f"the training function returned {_describe(obj)}, which cannot predict",
        hint="return a fitted estimator (with .predict) or a function frame -> predictions")


def _describe(obj: Any) -> str:
    if obj is None:
        return "None (did it forget to return the model?)"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"


def task_of(obj: Any, y: pd.Series) -> str:
    """binary, multiclass or regression: from the estimator's classes, else from the label."""
    classes = getattr(obj, "classes_", None)
    if classes is not None and hasattr(obj, "predict_proba"):
        return "binary" if len(classes) == 2 else "multiclass"
    if _is_regressor(obj):
        return "regression"
    values = y.dropna()
    if pd.api.types.is_float_dtype(values) and not values.isin([0.0, 1.0]).all():
        return "regression"
    n = values.nunique()
    return "binary" if n <= 2 else "multiclass"


def _is_regressor(obj: Any) -> bool:
    try:
        from sklearn.base import is_regressor

        return bool(is_regressor(obj))
    except Exception:  # not an sklearn object at all
        return False


class Predictor:
    """A trained object behind one interface: ``predict`` (labels or values) and ``scores``
    (P(positive) for binary classifiers, class probabilities for multiclass, else None)."""

    def __init__(self, obj: Any, flavor: str, task: str,
                 classes: list[Any] | None = None) -> None:
        self.obj = obj
        self.flavor = flavor
        self.task = task
        self.classes = classes if classes is not None else _classes(obj)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.flavor == "python_function":
            out = _column(self.obj(frame), len(frame))
            if self.task == "binary" and np.issubdtype(out.dtype, np.floating):
                positive = self.classes[-1] if self.classes else 1
                negative = self.classes[0] if self.classes else 0
                return np.where(out >= 0.5, positive, negative)
            return out
        return _column(self.obj.predict(frame), len(frame))

    def scores(self, frame: pd.DataFrame) -> np.ndarray | None:
        if self.flavor == "python_function":
            if self.task != "binary":
                return None
            out = _column(self.obj(frame), len(frame))
            return out.astype(np.float64) if np.issubdtype(out.dtype, np.floating) else None
        if self.task == "regression" or not hasattr(self.obj, "predict_proba"):
            return None
        proba = np.asarray(self.obj.predict_proba(frame))
        if proba.ndim != 2 or proba.shape[0] != len(frame):
            raise TrainingError(f"predict_proba returned shape {proba.shape} for {len(frame):,} "
                                "rows: expected one row of class probabilities per input row")
        return proba[:, 1] if self.task == "binary" else proba


def _classes(obj: Any) -> list[Any] | None:
    classes = getattr(obj, "classes_", None)
    return None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]


def _column(out: Any, rows: int) -> np.ndarray:
    """Predictions as a 1-D array of ``rows`` values; any other shape is the model's fault."""
    if isinstance(out, pd.DataFrame):
        if out.shape[1] != 1:
            raise TrainingError(f"the model returned a frame of {out.shape[1]} columns for "
                                f"{rows:,} rows: expected one prediction per row")
        out = out.iloc[:, 0]
    arr = np.asarray(out)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != rows:
        raise TrainingError(f"the model returned predictions of shape {arr.shape} for "
                            f"{rows:,} rows: expected one prediction per row ({rows:,},)")
    return arr


def dumps(obj: Any, definitions_module: str | None = None) -> bytes:
    """Pickle a trained object; code from the definitions module travels by value."""
    import cloudpickle

    module = sys.modules.get(definitions_module or "")
    if module is not None:
        cloudpickle.register_pickle_by_value(module)
    try:
        return bytes(cloudpickle.dumps(obj))
    finally:
        if module is not None:
            cloudpickle.unregister_pickle_by_value(module)


def loads(data: bytes) -> Any:
    import cloudpickle

    return cloudpickle.loads(data)


def load(flavor: str, data: bytes, unpack_dir: Path | None = None) -> Any:
    """The object a version's (hash-checked) artifact holds: a pickle for the native flavors,
    an ONNX graph, or a zipped MLflow model directory (unpacked once into ``unpack_dir``)."""
    if flavor == "onnx":
        return OnnxModel(data)
    if flavor == "mlflow":
        return _load_mlflow(data, unpack_dir)
    return loads(data)


_ONNX_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
    "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(string)": object}


class OnnxModel:
    """An ONNX graph behind the estimator API: ``predict`` runs its first output, and for a
    classifier (a second output of class probabilities, a tensor or skl2onnx's ZipMap list of
    dicts) ``predict_proba`` runs that one. The frame's columns (in signature order) feed one
    2-D input, or one input per column when the graph names its inputs after the columns."""

    def __init__(self, data: bytes) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ArtifactError("this version is an ONNX model, and onnxruntime is not "
                                "installed", hint="pip install 'tarmac[onnx]'") from None
        try:
            self.session = onnxruntime.InferenceSession(data,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ArtifactError(f"not a valid ONNX model: {str(exc).strip()[:300]}") from None
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        if len(self.outputs) > 1:
            self.predict_proba = self._probabilities

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    def input_types(self) -> dict[str, str]:
        return {i.name: i.type for i in self.inputs}

    def _feed(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1:
            one = self.inputs[0]
            return {one.name: frame.to_numpy(dtype=_ONNX_TYPES.get(one.type, np.float32))}
        missing = [i.name for i in self.inputs if i.name not in frame.columns]
        if missing:
            raise TrainingError(f"the ONNX model takes inputs {', '.join(self.input_names)}; "
                                f"the frame lacks {', '.join(missing)}")
        return {i.name: frame[[i.name]].to_numpy(dtype=_ONNX_TYPES.get(i.type, np.float32))
                for i in self.inputs}

    def _run(self, output: str, frame: pd.DataFrame) -> Any:
        try:
            return self.session.run([output], self._feed(frame))[0]
        except TrainingError:
            raise
        except Exception as exc:
            raise TrainingError(f"the ONNX model failed on {len(frame):,} rows: "
                                f"{str(exc).strip()[:300]}") from None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.asarray(self._run(self.outputs[0], frame))
        return out.reshape(len(frame), -1)[:, 0] if out.ndim > 1 else out

    def _probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        out = self._run(self.outputs[1], frame)
        if isinstance(out, list):  # ZipMap: one {class: probability} per row
            classes = list(out[0]) if out else []
            return np.array([[row[c] for c in classes] for row in out], dtype=np.float64)
        return np.asarray(out, dtype=np.float64)


def _load_mlflow(data: bytes, unpack_dir: Path | None) -> Any:
    """An MLflow pyfunc model from its zipped directory (unpacked once, atomically)."""
    import tempfile
    import zipfile

    try:
        import mlflow.pyfunc
    except ImportError:
        raise ArtifactError("this version is an MLflow pyfunc model, and the mlflow package "
                            "is not installed", hint="pip install 'tarmac[mlflow]'") from None
    if unpack_dir is None:
        unpack_dir = Path(tempfile.mkdtemp(prefix="tarmac-mlflow-"))
    if not (unpack_dir / "MLmodel").exists():
        unpack_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=unpack_dir.parent, prefix=".tmp-"))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(tmp)
        try:
            tmp.rename(unpack_dir)
        except OSError:  # another process unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        return mlflow.pyfunc.load_model(str(unpack_dir))
    except Exception as exc:
        raise ArtifactError(f"MLflow could not load the model unpacked at {unpack_dir}: "
                            f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None


PredictFn = Callable[[pd.DataFrame], Any]

__all__ = ["OnnxModel", "Predictor", "detect", "dumps", "load", "loads", "task_of"]

"""The project file, ``tarmac.yaml``: parsed, interpolated and validated.

Every backend is chosen by a URL; which schemes exist is one table (``BACKENDS``), so adding a
backend is adding a row. A bad file raises ``ConfigError`` naming the file, the key path, the bad
value and what was expected. Secrets come in through ``${ENV}`` and are never echoed back:
``redact`` masks them wherever a URL is shown or audited.

Example::

    cfg = load_config(Path("tarmac.yaml"))
    cfg.catalog_url          # 'sqlite:////abs/path/.tarmac/catalog.db'
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tarmac.errors import ConfigError

CONFIG_FILE = "tarmac.yaml"

@dataclass(frozen=True)
class Backend:
    """One row of the registry: what a scheme is and the class that opens it.

    ``path`` is the dotted path of a class with a ``from_url(url, **kw)`` classmethod, imported
    only when a backend of that kind is opened (so ``import tarmac`` loads no driver); ``None``
    marks a slot whose class lands with a later issue. ``example`` is what error messages show.
    ``in_process`` backends answer in microseconds (files, no server): callers may run them on
    an event loop instead of a thread.
    """

    description: str
    path: str | None
    example: str
    in_process: bool = False

    def load(self) -> type[Any]:
        """Import and return the backend class (``ConfigError`` if its module is missing)."""
        if self.path is None:
            raise ConfigError(f"{self.description} is not available yet")
        module, _, name = self.path.rpartition(".")
        return getattr(importlib.import_module(module), name)


_LOCAL_LAKE = Backend("a local folder", "tarmac.lake._storage.LocalStorage", "./lake",
                      in_process=True)
_OBJECT_LAKE = "tarmac.lake._storage.ObjectStorage"

#: concern -> scheme -> Backend. ``""`` is a bare local path. Adding a backend is one class
#: with ``from_url`` plus one row here; validation, construction and readiness all read it.
BACKENDS: dict[str, dict[str, Backend]] = {
    "lake": {
        "": _LOCAL_LAKE,
        "file": replace(_LOCAL_LAKE, example="file:///abs/lake"),
        "s3": Backend("an S3-compatible object store", _OBJECT_LAKE, "s3://bucket/lake"),
        "gs": Backend("Google Cloud Storage", _OBJECT_LAKE, "gs://bucket/lake"),
        "az": Backend("Azure Blob Storage", _OBJECT_LAKE, "az://container/lake"),
        "abfss": Backend("Azure Data Lake Storage", _OBJECT_LAKE,
                         "abfss://container@account.dfs.core.windows.net/lake"),
    },
    "catalog": {
        "sqlite": Backend("SQLite file", "tarmac.catalog._engine.SqliteCatalog",
                          "sqlite:///path.db", in_process=True),
        "postgresql": Backend("PostgreSQL", "tarmac.catalog._engine.PostgresCatalog",
                              "postgresql://user@host:5432/db"),
    },
    "online_store": {
        "sqlite": Backend("SQLite file", "tarmac.features.online.sqlite.SqliteOnlineStore",
                          "sqlite:///path.db", in_process=True),
        "redis": Backend("Redis", "tarmac.features.online.redis.RedisOnlineStore",
                         "redis://host:port/db"),
    },
    "streams": {
        "embedded": Backend("embedded durable log", "tarmac.streams.embedded.EmbeddedLog",
                             "embedded", in_process=True),
        "kafka": Backend("Apache Kafka", "tarmac.streams.kafka.KafkaStreamLog",
                          "kafka://host:9092"),
        "redis": Backend("Redis Streams", "tarmac.streams.redis.RedisStreamLog",
                          "redis://host:port/db"),
    },
    "compute": {
        "local": Backend("local processes", None, "local", in_process=True),
        "ray": Backend("Ray cluster", None, "ray://host:10001"),
    },
}

#: the scheme each concern uses when tarmac.yaml does not name one (always available)
DEFAULT_SCHEMES = {"lake": "", "catalog": "sqlite", "online_store": "sqlite",
                   "streams": "embedded", "compute": "local"}


def backend(concern: str, url: str) -> Backend:
    """The registry row for ``url`` under ``concern``; ``ConfigError`` listing the known schemes
    if there is none, or saying so if that backend has no implementation yet."""
    problem = _backend_problem(concern, url)
    if problem is not None:
        raise ConfigError(f"{concern} URL {redact(url)!r}: {problem}",
                          hint=f"fix {concern} in {CONFIG_FILE}")
    return BACKENDS[concern][url_scheme(url)]


def open_backend(concern: str, url: str, **kwargs: Any) -> Any:
    """Construct the backend ``url`` names: ``BackendClass.from_url(url, **kwargs)``."""
    return backend(concern, url).load().from_url(url, **kwargs)


def _backend_problem(concern: str, url: str) -> str | None:
    """Why ``url`` cannot be used for ``concern`` (``None`` if it can)."""
    rows = BACKENDS[concern]
    scheme = url_scheme(url)
    found = rows.get(scheme)
    if found is None:
        choices = [f"{b.example} ({b.description})" for s, b in rows.items()
                   if b.path is not None or s == DEFAULT_SCHEMES[concern]]
        expected = " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1
                               else choices)
        return f"unknown backend scheme {scheme!r}; expected {expected}"
    if found.path is None and scheme != DEFAULT_SCHEMES[concern]:
        default = rows[DEFAULT_SCHEMES[concern]]
        return (f"{found.description} ({scheme}) is not available yet; for now use "
                f"{default.example!r} ({default.description})")
    return None


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$"


class AuditAnchorConfig(BaseModel):
    """``audit_anchor``: where the audit chain's head is published and how often
    (``tarmac.ledger.anchors``); the default file is outside the project, one per catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # a file (default: ~/.local/state/tarmac/<name>-<catalog id>.anchors) or an object-store
    # prefix, s3://bucket/prefix (one object per anchor; credentials as for the lake)
    path: str | None = None
    every_records: int = Field(default=100, ge=1)
    every_minutes: float = Field(default=60.0, gt=0)
    # besides the file or objects: each anchor POSTed here, signed with webhook_secret
    webhook: str | None = None
    webhook_secret: SecretStr | None = None

    @field_validator("path")
    @classmethod
    def _anchor_place(cls, value: str | None) -> str | None:
        if value is not None and url_scheme(value) not in ("", "file", "s3"):
            raise ValueError("expected a file path or s3://BUCKET/PREFIX (object-store anchors "
                             "are S3-compatible stores for now)")
        if value is not None and url_scheme(value) == "s3" and not value[5:].strip("/"):
            raise ValueError("expected s3://BUCKET/PREFIX")
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _signed(self) -> AuditAnchorConfig:
        if self.webhook is not None and not (
                self.webhook_secret and self.webhook_secret.get_secret_value()):
            raise ValueError("audit_anchor.webhook needs webhook_secret (anchors are signed "
                             "with HMAC-SHA256), e.g. webhook_secret: ${ANCHOR_SECRET}")
        return self


class ProjectConfig(BaseModel):
    """The validated contents of ``tarmac.yaml``; URLs are absolute after ``load_config``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    lake: str = "./lake"
    catalog: str = "sqlite:///.tarmac/catalog.db"
    online_store: str = "sqlite:///.tarmac/online.db"
    streams: str = "embedded"
    compute: str = "local"
    artifacts: str = "./.tarmac/artifacts"  # model files, by SHA-256 (a shared path for a team)
    owner: str | None = None
    # the audit key file (outside the catalog; `tarmac audit key init` creates it); unset: the
    # default ~/.config/tarmac/<name>.key if it exists; TARMAC_AUDIT_KEY overrides both
    audit_key: str | None = None
    audit_anchor: AuditAnchorConfig = Field(default_factory=AuditAnchorConfig)
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)
    serving: ServingConfig = Field(default_factory=lambda: ServingConfig())
    # who must show a token: required, off, or auto (required with a PostgreSQL catalog or a
    # server bound beyond loopback; the embedded laptop default stays open)
    auth: Literal["required", "off", "auto"] = "auto"

    @field_validator("lake", "catalog", "online_store", "streams", "compute")
    @classmethod
    def _known_scheme(cls, value: str, info: Any) -> str:
        problem = _backend_problem(info.field_name, value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_words(cls, value: Any) -> Any:
        # YAML reads a bare `off` / `on` as a boolean: take them as the words they are
        if value is False:
            return "off"
        if value is True:
            return "required"
        return value

    @field_validator("artifacts")
    @classmethod
    def _artifacts_local(cls, value: str) -> str:
        return _local_path(value)


def _local_path(value: str) -> str:
    if url_scheme(value) not in ("", "file"):
        raise ValueError("artifacts must be a local or mounted folder for now (object stores "
                         "come with the scale-out work)")
    return value


def url_scheme(value: str) -> str:
    """A URL's backend scheme: ``postgresql+psycopg://`` -> ``postgresql``; a path -> ``''``."""
    if "://" not in value:
        return value if value in ("embedded", "local") else ""
    return value.split("://", 1)[0].split("+", 1)[0].lower()


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to print or audit."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def interpolate(value: Any, *, path: str, file: Path) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string, recursively.

    A variable that is unset and has no default is a ``ConfigError`` naming the key path.
    """
    if isinstance(value, dict):
        return {k: interpolate(v, path=f"{path}.{k}" if path else str(k), file=file)
                for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, path=f"{path}[{i}]", file=file) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        value = os.environ.get(var)
        if value is not None and (value or default is None):
            return value  # like the shell, ${VAR:-default} also replaces an empty value
        if default is not None:
            return default
        raise ConfigError(
            f"{file}: key '{path}' uses ${{{var}}} but the environment variable {var} is not set",
            hint=f"export {var}=... or write ${{{var}:-default}}",
        )

    return _ENV_PATTERN.sub(substitute, value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    silently: a second ``sources:`` block or two sources of one name would hide the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are allowed to repeat keys
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:
                continue  # an unhashable key: the base loader reports it
            if first != key_node.start_mark.line + 1:
                raise DuplicateKeyError(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping key given twice (where: both lines)."""

    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(f"key {key!r} appears twice (line {first} and line {again})")
        self.key, self.first, self.again = key, first, again


def parse_yaml(text: str) -> Any:
    """YAML text as Python values, like ``yaml.safe_load`` but refusing duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_config(file: Path) -> ProjectConfig:
    """Read, interpolate and validate a project file; relative paths become absolute."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: project file not found",
            hint="run `tarmac init DIR` to create a project, or pass --project DIR",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the project file ({exc})") from None
    try:
        raw = parse_yaml(text)
    except DuplicateKeyError as exc:
        raise ConfigError(f"{file}: {exc}; each key may be given once (two sources need two "
                          "names)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}: malformed YAML{where}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{file}: the project file is empty; expected at least `name: ...`")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{file}: expected a mapping of keys (name, lake, catalog, ...) at the top level, "
            f"got {type(raw).__name__}"
        )
    raw = interpolate(raw, path="", file=file)
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, file)) from None
    return _absolute(config, file.parent.resolve())


def describe(exc: ValidationError, file: Path, *, prefix: str = "",
             model: type[BaseModel] | None = None) -> str:
    """One line per validation error: the file, the key path (under ``prefix``), the bad value
    and what was expected (for an unknown key: the keys ``model`` allows at that level)."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = list((model or ProjectConfig).model_fields) if len(loc) == 1 else []
            message = "unknown key" + (f"; expected one of: {', '.join(allowed)}"
                                       if allowed else "")
        elif err["type"] == "missing":
            message = "required key is missing"
        value = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(value, dict) else (
            f" (got {redact(value)!r})" if isinstance(value, str) else f" (got {value!r})")
        lines.append(f"{file}: key '{key}'{shown}: {message}")
    return "\n".join(lines)


def _absolute(config: ProjectConfig, root: Path) -> ProjectConfig:
    """Resolve relative lake paths and relative SQLite paths against the project folder."""
    updates: dict[str, str] = {}
    for key in ("lake", "artifacts"):
        value = getattr(config, key)
        if url_scheme(value) in ("", "file"):
            path = Path(value.removeprefix("file://"))
            updates[key] = str(path if path.is_absolute() else (root / path).resolve())
    for key in ("catalog", "online_store"):
        url = getattr(config, key)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url.removeprefix("sqlite:///")
            if rel and rel != ":memory:":
                updates[key] = f"sqlite:///{(root / rel).resolve()}"
    return config.model_copy(update=updates)


class PredictionLogConfig(BaseModel):
    """``serving.prediction_log``: how the prediction log makes records durable
    (docs/prediction-log.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # false: predictions are answered but not recorded (to measure what the log costs, or a
    # throwaway test server); the server says so at start-up and in /ready
    enabled: bool = True
    fsync: Literal["batch", "always", "never"] = "batch"
    # "batch": the longest an appended record waits for its fsync
    sync_every_ms: float = Field(default=50.0, gt=0)
    # unflushed records the log holds before appends are refused (503)
    max_pending_mb: float = Field(default=256.0, gt=0)
    # how often the background flusher commits to the predictions table
    flush_every_s: float = Field(default=1.0, gt=0)
    # a topic of the project's stream log: the flusher publishes every prediction there
    # (other systems subscribe) and `tarmac stream run` sinks the topic into the predictions
    # table exactly once, as the stream source 'predictions' (docs/prediction-log.md)
    topic: str | None = Field(default=None, min_length=1, max_length=200)

class TopicsConfig(BaseModel):
    """``serving.topics``: the limits of the HTTP ingest endpoint, ``POST /v1/topics/{topic}``
    (docs/serving.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # a body over this is refused with 413 before it is read whole
    max_body_mb: float = Field(default=16.0, gt=0)
    # records in one request (one atomic batch in the log); more are refused with 422
    max_records: int = Field(default=10_000, gt=0)


class ServingConfig(BaseModel):
    """``serving:``: the model server's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prediction_log: PredictionLogConfig = Field(default_factory=lambda: PredictionLogConfig())
    topics: TopicsConfig = Field(default_factory=lambda: TopicsConfig())


ProjectConfig.model_rebuild()

"""Backends by name: one registry (``config.BACKENDS``) validates, constructs and describes them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tarmac
from tarmac.config import BACKENDS, DEFAULT_SCHEMES, Backend, backend, load_config, open_backend
from tarmac.errors import ConfigError
from tarmac.features.online import SqliteOnlineStore, open_online_store
from tarmac.lake._storage import ObjectStorage, storage_options

HEAVY = ("redis", "psycopg", "fastapi", "uvicorn", "sklearn", "confluent_kafka", "ray")


def write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    f = root / "tarmac.yaml"
    f.write_text(text)
    return f


@pytest.mark.parametrize("concern, scheme", [(c, s) for c, rows in BACKENDS.items()
                                             for s, b in rows.items() if b.path])
def test_every_row_names_a_class_that_opens_it(concern: str, scheme: str) -> None:
    cls = BACKENDS[concern][scheme].load()
    assert callable(getattr(cls, "from_url", None)), f"{cls} has no from_url"
    if concern == "catalog":  # a catalog also says how it serializes audit appends
        assert callable(cls.before_write) and callable(cls.lock_audit)


def test_every_concern_has_an_available_default() -> None:
    assert set(DEFAULT_SCHEMES) == set(BACKENDS)
    for concern, scheme in DEFAULT_SCHEMES.items():
        assert scheme in BACKENDS[concern]


def test_unknown_scheme_lists_the_known_ones_and_masks_secrets() -> None:
    with pytest.raises(ConfigError) as e:
        backend("catalog", "mysql://root:hunter2@db/x")
    msg = str(e.value)
    assert "unknown backend scheme 'mysql'" in msg
    assert "sqlite:///path.db (SQLite file) or postgresql://" in msg
    assert "hunter2" not in msg and "catalog" in msg


@pytest.mark.parametrize("key, value, name", [("compute", "ray://head:10001", "Ray cluster")])
def test_a_backend_without_a_class_yet_is_refused_clearly(tmp_path: Path, key: str, value: str,
                                                          name: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f"name: acme\n{key}: {value}\n"))
    msg = str(e.value)
    assert f"key '{key}'" in msg and name in msg and "not available yet" in msg


def test_the_defaults_of_the_unfilled_slots_still_load(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: acme\nstreams: embedded\ncompute: local\n"))
    assert (cfg.streams, cfg.compute) == ("embedded", "local")
    with pytest.raises(ConfigError, match="not available yet"):
        open_backend("compute", "local")  # nothing opens compute before its issue
    log = open_backend("streams", "embedded", root=tmp_path)  # the embedded log (issue 14)
    try:
        assert type(log).__name__ == "EmbeddedLog"
        assert (tmp_path / ".tarmac" / "streams.db").exists()
    finally:
        log.close()


def test_redis_streams_is_a_registered_backend(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: acme\nstreams: redis://localhost:6379/1\n"))
    assert cfg.streams == "redis://localhost:6379/1"
    row = backend("streams", cfg.streams)
    assert (row.description, row.in_process) == ("Redis Streams", False)
    assert row.load().__name__ == "RedisStreamLog"  # opening it needs the server (tests/streams)


def test_a_kafka_url_loads_and_opens_the_kafka_log(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: acme\nstreams: kafka://broker:9092\n"))
    assert cfg.streams == "kafka://broker:9092"
    assert backend("streams", cfg.streams).load().__name__ == "KafkaStreamLog"
    with pytest.raises(ConfigError, match="expected kafka://host:port"):
        open_backend("streams", "kafka://no-port", root=tmp_path)


def test_open_backend_constructs_the_registered_class(tmp_path: Path) -> None:
    store = open_backend("online_store", "sqlite:///o.db", namespace="p", root=tmp_path)
    try:
        assert isinstance(store, SqliteOnlineStore) and store.path == tmp_path / "o.db"
    finally:
        store.close()
    engine = open_backend("catalog", f"sqlite:///{tmp_path / 'c.db'}")
    assert engine.dialect.name == "sqlite"
    engine.dispose()


def test_adding_a_backend_is_one_class_and_one_row(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, str]] = []

    class MemoryStore:
        @classmethod
        def from_url(cls, url: str, *, namespace: str, root: Path, create: bool = True) -> Any:
            opened.append((url, namespace))
            return cls()

    monkeypatch.setattr(sys.modules[__name__], "MemoryStore", MemoryStore, raising=False)
    monkeypatch.setitem(BACKENDS["online_store"], "memory",
                        Backend("in memory", f"{__name__}.MemoryStore", "memory://"))
    assert isinstance(open_online_store("memory://x", namespace="p", root=tmp_path), MemoryStore)
    assert opened == [("memory://x", "p")]
    load_config(write(tmp_path, "name: acme\nonline_store: memory://x\n"))  # validates too


def test_serving_runs_in_process_stores_inline() -> None:
    assert backend("online_store", "sqlite:///o.db").in_process
    assert not backend("online_store", "redis://h:6379/0").in_process


# -- lake storage ------------------------------------------------------------------------------


def test_object_store_options_come_from_the_environment() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_DEFAULT_REGION": "eu",
           "TARMAC_STORAGE_AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
           "TARMAC_STORAGE_AWS_ALLOW_HTTP": "true", "AZURE_STORAGE_ACCOUNT_KEY": "not for s3",
           "HOME": "/root"}
    got = ObjectStorage.from_url("s3://bucket/lake/", environ=env)
    assert (got.root, got.local) == ("s3://bucket/lake", False)
    assert got.options == {"aws_access_key_id": "AK", "aws_secret_access_key": "SK",
                           "aws_region": "eu", "aws_endpoint_url": "http://127.0.0.1:9000",
                           "aws_allow_http": "true"}
    assert "SK" not in repr(got)
    assert storage_options("az", env) == {"azure_storage_account_key": "not for s3",
                                          "aws_endpoint_url": "http://127.0.0.1:9000",
                                          "aws_allow_http": "true"}
    assert storage_options("gs", {"AWS_REGION": "eu"}) == {}


def test_tarmac_storage_option_wins_over_the_provider_variable() -> None:
    env = {"AWS_REGION": "eu", "TARMAC_STORAGE_AWS_REGION": "us"}
    assert storage_options("s3", env) == {"aws_region": "us"}


def test_a_project_on_an_object_store_passes_the_options_to_the_lake(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("TARMAC_STORAGE_AWS_REGION", "eu-west-1")
    write(tmp_path, "name: acme\nlake: s3://bucket/lake\n")
    with tarmac.open(tmp_path) as p:
        assert p.lake.root == "s3://bucket/lake" and not p.lake.is_local
        assert p.lake.storage_options == {"aws_access_key_id": "AK", "aws_region": "eu-west-1"}


def test_a_local_lake_has_no_options(tmp_path: Path) -> None:
    write(tmp_path, "name: acme\nlake: ./data\n")
    with tarmac.open(tmp_path) as p:
        assert p.lake.root == str((tmp_path / "data").resolve())
        assert p.lake.storage_options is None


# -- import hygiene ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [
    "import tarmac",
    "import sys\nfrom tarmac.cli import main\nsys.argv = ['tarmac', '--help']\n"
    "try:\n    main()\nexcept SystemExit:\n    pass",
])
def test_import_and_help_load_no_backend_driver(code: str) -> None:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} " \
        "if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []



@pytest.mark.parametrize("root, local", [("/data/lake", True), ("file:///data/lake", True),
                                         ("s3://bucket/lake", False), ("gs://b/l", False),
                                         ("az://c/l", False)])
def test_the_lake_is_local_exactly_for_the_registry_s_in_process_rows(
        project: tarmac.Project, root: str, local: bool) -> None:
    from tarmac.lake import Lake

    assert Lake(root, project.ledger).is_local is local


def test_project_streams_hands_the_backend_its_folder_and_project_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project name reaches the stream backend through the registry seam
    (``from_url(url, root=..., namespace=...)``), not by the backend reading tarmac.yaml."""
    seen: dict[str, Any] = {}

    class Recorder:
        @classmethod
        def from_url(cls, url: str, **kwargs: Any) -> Any:
            seen.update(kwargs, url=url)
            return cls()

        def close(self) -> None:
            pass

    class Row(Backend):
        def load(self) -> type[Any]:
            return Recorder

    monkeypatch.setitem(BACKENDS["streams"], "redis",
                        Row("Redis Streams", "x.Recorder", "redis://host:port/db"))
    write(tmp_path, "name: acme\nstreams: redis://127.0.0.1:6379/3\n")
    with tarmac.open(tmp_path) as p:
        assert isinstance(p.streams, Recorder)
    assert seen == {"url": "redis://127.0.0.1:6379/3", "root": tmp_path.resolve(),
                    "namespace": "acme"}

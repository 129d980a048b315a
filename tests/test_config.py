"""tarmac.yaml: validation, interpolation, and the errors a user sees for a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

import tarmac
from tarmac.config import load_config, redact
from tarmac.errors import ConfigError, UsageError


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "tarmac.yaml"
    f.write_text(text)
    return f


def test_defaults_are_embedded_and_paths_absolute(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: acme\n"))
    assert cfg.lake == str((tmp_path / "lake").resolve())
    assert cfg.catalog == f"sqlite:///{(tmp_path / '.tarmac/catalog.db').resolve()}"
    assert (cfg.streams, cfg.compute) == ("embedded", "local")


def test_env_interpolation_with_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASS", "s3cret")
    cfg = load_config(write(tmp_path, "name: acme\n"
                                      "catalog: postgresql://u:${PGPASS}@db/x\n"
                                      "online_store: ${ONLINE:-redis://localhost:6379/0}\n"))
    assert cfg.catalog == "postgresql://u:s3cret@db/x"
    assert cfg.online_store == "redis://localhost:6379/0"
    assert redact(cfg.catalog) == "postgresql://u:***@db/x"


def test_empty_env_variable_takes_the_default_like_the_shell(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLINE", "")  # e.g. a CI secret that is not configured
    monkeypatch.setenv("OWNER", "")
    cfg = load_config(write(tmp_path, "name: acme\nonline_store: ${ONLINE:-redis://r:6379/0}\n"
                                      "owner: x${OWNER}\n"))
    assert cfg.online_store == "redis://r:6379/0" and cfg.owner == "x"  # no default: kept empty


def test_artifacts_folder_is_resolved_and_must_be_local(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: acme\n"))
    assert cfg.artifacts == str((tmp_path / ".tarmac/artifacts").resolve())
    with pytest.raises(ConfigError, match="artifacts must be a local or mounted folder"):
        load_config(write(tmp_path, "name: acme\nartifacts: s3://bucket/models\n"))


def test_missing_env_variable_names_key_and_variable(tmp_path: Path) -> None:
    f = write(tmp_path, "name: acme\ncatalog: postgresql://u:${NOPE_NOT_SET}@db/x\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(f) in str(e.value) and "'catalog'" in str(e.value) and "NOPE_NOT_SET" in str(e.value)
    assert e.value.exit_code == 2


def test_unknown_backend_scheme_lists_expected(tmp_path: Path) -> None:
    f = write(tmp_path, "name: acme\nonline_store: memcached://localhost\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert "key 'online_store'" in msg and "memcached" in msg
    assert "redis://" in msg and "sqlite://" in msg


def test_bad_value_never_echoes_a_password(tmp_path: Path) -> None:
    f = write(tmp_path, "name: acme\ncatalog: mysql://root:hunter2@db/x\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert "hunter2" not in str(e.value) and "***" in str(e.value)


def test_unknown_key_and_missing_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "lake: ./lake\ncatalgo: sqlite:///x.db\n"))
    msg = str(e.value)
    assert "key 'name'" in msg and "required" in msg
    assert "key 'catalgo'" in msg and "unknown key" in msg


@pytest.mark.parametrize("text, fragment", [
    ("name: [unclosed\n", "malformed YAML at line"),
    ("", "empty"),
    ("- a\n- b\n", "expected a mapping"),
    ("name: 'has spaces'\n", "key 'name'"),
])
def test_malformed_files(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert fragment in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        tarmac.open(tmp_path)
    assert "project file not found" in str(e.value) and "tarmac init" in str(e.value)


def test_init_scaffolds_and_refuses_to_overwrite(tmp_path: Path) -> None:
    from tarmac.project import scaffold

    root = scaffold(tmp_path / "myproj")
    assert sorted(p.name for p in root.iterdir()) == [".gitignore", "definitions.py",
                                                      "tarmac.yaml"]
    assert load_config(root / "tarmac.yaml").name == "myproj"
    before = (root / "tarmac.yaml").read_text()
    with pytest.raises(UsageError, match="not overwriting"):
        tarmac.init(root)
    assert (root / "tarmac.yaml").read_text() == before


def test_init_returns_the_opened_project(tmp_path: Path) -> None:
    """As the README uses it: ``p = tarmac.init(...)`` then ``p.lake``."""
    with tarmac.init(tmp_path / "myproj") as p:
        assert isinstance(p, tarmac.Project) and p.name == "myproj"
        assert p.root == (tmp_path / "myproj").resolve()
        p.lake.write("customers", {"customer_id": [1, 2]})
        assert p.sql("SELECT count(*) AS n FROM customers").to_pylist() == [{"n": 2}]


def test_unreachable_postgres_fails_fast_and_clearly(tmp_path: Path) -> None:
    import time

    write(tmp_path, "name: acme\ncatalog: postgresql://postgres:pw@127.0.0.1:1/nodb\n")
    start = time.monotonic()
    with pytest.raises(tarmac.errors.BackendUnavailableError) as e:
        tarmac.open(tmp_path)
    assert time.monotonic() - start < 10
    assert "cannot reach the catalog" in str(e.value) and "pw" not in str(e.value)


def test_auth_off_written_bare_in_yaml_is_off(tmp_path: Path) -> None:
    """YAML reads `auth: off` as a boolean; it means the word."""
    import tarmac

    p = tarmac.init(tmp_path / "p")
    p.close()
    with open(tmp_path / "p" / "tarmac.yaml", "a", encoding="utf-8") as f:
        f.write("auth: off\n")
    with tarmac.open(tmp_path / "p") as again:
        assert again.config.auth == "off"

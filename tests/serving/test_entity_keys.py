"""One entity-key rule at every door (issue 12): the SDK (``p.features.online``), the CLI
(``tarmac features get --entity k=v``) and the server (``POST /features``) accept and refuse the
same key values, through ``tarmac.features.keys``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from serving.test_features_api import build
from tarmac.cli import app as cli_app
from tarmac.errors import UsageError
from tarmac.features.keys import coerce_key, key_rule, parse_key
from tarmac.project import Project
from tarmac.serving import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

INT_REF, STR_REF = "activity:sessions", "shops:rating"  # customer_id int64, shop_id string


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = build(tmp_path_factory.mktemp("keys") / "proj")
    yield p
    p.close()


@pytest.fixture(scope="module")
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(create_app(project)) as c:
        yield c


def sdk_accepts(project: Project, ref: str, key: str, value: Any) -> bool:
    try:
        project.features.online(ref, [{key: value}])
    except UsageError as exc:
        assert f"entity key '{key}' must be" in exc.message
        return False
    return True


def http_accepts(client: TestClient, ref: str, key: str, value: Any) -> bool:
    r = client.post("/features", json={"features": [ref], "entities": [{key: value}]})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert [e["loc"] for e in r.json()["detail"]] == [["body", "entities", 0, key]]
    return r.status_code == 200


@pytest.mark.parametrize(("ref", "key", "value", "accepted"), [
    (INT_REF, "customer_id", 1, True),
    (INT_REF, "customer_id", "1", True),
    (INT_REF, "customer_id", "-7", True),
    (INT_REF, "customer_id", "abc", False),
    (INT_REF, "customer_id", "1.5", False),
    (INT_REF, "customer_id", 1.5, False),
    (INT_REF, "customer_id", True, False),
    (INT_REF, "customer_id", None, False),
    (INT_REF, "customer_id", [1], False),
    (INT_REF, "customer_id", {"a": 1}, False),
    (STR_REF, "shop_id", "s1", True),
    (STR_REF, "shop_id", 7, True),
    (STR_REF, "shop_id", 1.5, True),
    (STR_REF, "shop_id", False, True),
    (STR_REF, "shop_id", None, False),  # the SDK filed it under "None" before: now refused
    (STR_REF, "shop_id", ["s1"], False),
    (STR_REF, "shop_id", {"a": 1}, False),
])
def test_sdk_and_http_accept_the_same_keys(project: Project, client: TestClient, ref: str,
                                           key: str, value: Any, accepted: bool) -> None:
    assert sdk_accepts(project, ref, key, value) is accepted
    assert http_accepts(client, ref, key, value) is accepted


@pytest.mark.parametrize("text", ["1", "-7", "+4", "abc", "1.5", "1e3", "0x10"])
def test_cli_accepts_the_keys_the_sdk_and_http_accept(project: Project, client: TestClient,
                                                       text: str) -> None:
    """A key typed on the command line is the same string sent to the SDK or the server."""
    result = CliRunner().invoke(cli_app, ["--project", str(project.root), "features", "get",
                                          INT_REF, "--entity", f"customer_id={text}", "--json"])
    accepted = sdk_accepts(project, INT_REF, "customer_id", text)
    assert http_accepts(client, INT_REF, "customer_id", text) is accepted
    assert (result.exit_code == 0) is accepted, result.output
    if accepted:  # typed as the view declares it, as the server echoes a number
        assert json.loads(result.output)["results"][0]["entity"] == {"customer_id": int(text)}
    else:
        assert "entity key 'customer_id' must be an integer" in result.output


def test_the_rule_itself() -> None:
    assert key_rule("int64") is key_rule("int32")
    assert key_rule("int64").expected == "must be an integer"
    assert key_rule(None) is key_rule("string")
    assert coerce_key("int64", "k", "42") == 42 and coerce_key("string", "k", 42) == 42
    assert parse_key("int64", "42") == 42 and parse_key("int64", "x") == "x"
    assert parse_key("string", "42") == "42"
    with pytest.raises(UsageError, match=r"entity key 'k' must be an integer, got 'x{10}"):
        coerce_key("int64", "k", "x" * 10_000)
    with pytest.raises(UsageError) as err:  # a big value is never echoed whole
        coerce_key("int64", "k", "x" * 10_000)
    assert len(err.value.message) < 300

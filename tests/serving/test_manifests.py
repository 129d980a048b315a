"""Deploy manifests: every Kubernetes object is checked against the Kubernetes OpenAPI schemas
(``kubernetes-validate``, strict: an unknown field is an error), the Dockerfile against what a
safe image needs, and each bad input gets a clear error or warning."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from models.conftest import LOGISTIC, build, definitions
from tarmac.errors import UsageError
from tarmac.project import Project
from tarmac.serving.manifests import (
    INFLIGHT_METRIC,
    DeployWarning,
    dns_label,
    export_manifests,
)

# the oldest Kubernetes still commonly run and the newest the package bundles
K8S_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
# a second model whose name is not a valid Kubernetes object name
ODD = LOGISTIC.replace('name="risk"', 'name="Risk_V2"').replace("def train(", "def train2(")


@pytest.fixture(scope="module")
def mp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A project with 'risk' (promoted to champion) and 'Risk_V2' (trained, no champion)."""
    p = build(tmp_path_factory.mktemp("manifests") / "proj", text=definitions() + ODD)
    p.models.train("risk")
    p.models.promote("risk", 1, force=True, reason="test")
    p.models.train("Risk_V2")
    yield p
    p.close()


def export(p: Project, name: str, target: str, out: Path,
           **kw: Any) -> tuple[list[Path], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeployWarning)
        paths = export_manifests(p, name, target, out, **kw)
    return paths, [str(w.message) for w in caught if w.category is DeployWarning]


def manifests(out: Path) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for f in sorted((out / "kubernetes").glob("*.yaml"))
            for m in yaml.safe_load_all(f.read_text())}


def test_every_manifest_is_valid_kubernetes(mp: Project, tmp_path: Path) -> None:
    paths, _ = export(mp, "risk", "kubernetes", tmp_path / "deploy", image="reg.io/risk:1")
    files = [p for p in paths if p.suffix == ".yaml"]
    kinds = set()
    for file in files:
        for manifest in yaml.safe_load_all(file.read_text()):
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(manifest, version, strict=True)
            kinds.add(manifest["kind"])
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "ConfigMap"}


def test_the_validation_is_not_vacuous(mp: Project, tmp_path: Path) -> None:
    """The same check refuses a broken object: a misspelt field, a wrong type."""
    export(mp, "risk", "kubernetes", tmp_path / "deploy")
    deployment = manifests(tmp_path / "deploy")["Deployment"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_deployment_probes_resources_config_and_secrets(mp: Project, tmp_path: Path) -> None:
    export(mp, "risk", "kubernetes", tmp_path / "deploy", image="reg.io/risk:1",
           cpu_limit="3", memory_limit="1Gi")
    found = manifests(tmp_path / "deploy")
    container = found["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.io/risk:1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"] == {
        "cpu": "3", "memory": "1Gi"}
    assert container["command"][-2:] == ["--workers", "3"]  # one per CPU of the limit
    assert container["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert all("value" not in e for e in env.values())  # nothing inlined: all references
    assert env["TARMAC_PROJECT"]["valueFrom"]["configMapKeyRef"]["name"] == "risk-config"
    audit = env["TARMAC_AUDIT_KEY"]["valueFrom"]["secretKeyRef"]
    assert audit["name"] == "risk-secrets" and audit["optional"] is True
    config = found["ConfigMap"]
    assert yaml.safe_load(config["data"]["tarmac.yaml"]) == yaml.safe_load(
        (mp.root / "tarmac.yaml").read_text())  # the project file itself, as written
    hpa = found["HorizontalPodAutoscaler"]["spec"]
    assert {m["type"] for m in hpa["metrics"]} == {"Resource", "Pods"}
    pods = next(m for m in hpa["metrics"] if m["type"] == "Pods")
    assert pods["pods"]["metric"]["name"] == INFLIGHT_METRIC
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == \
        found["Deployment"]["spec"]["selector"]["matchLabels"] == \
        found["Service"]["spec"]["selector"]


def test_dockerfile_essentials_and_pinned_requirements(mp: Project, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    paths, _ = export(mp, "risk", "docker", out)
    assert not (out / "kubernetes").exists()  # docker: the build context only
    text = (out / "Dockerfile").read_text()
    users = re.findall(r"(?m)^USER\s+(\S+)", text)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"(?m)^HEALTHCHECK .*\n?.*/health", text)
    assert re.search(r'(?m)^CMD \["tarmac", "serve", "--host", "0.0.0.0"', text)
    assert re.search(r"(?m)^FROM python:\d+\.\d+-slim$", text)
    lines = [ln for ln in (out / "requirements.txt").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", ln) for ln in lines)
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in lines
    assert (out / ".dockerignore").read_text().count(".git") >= 1
    assert (out / "project" / "definitions.py").is_file()
    assert out / "project" in paths


def test_project_requirements_win_and_unpinned_lines_are_reported(
        mp: Project, tmp_path: Path) -> None:
    own = mp.root / "requirements.txt"
    own.write_text("scikit-learn==1.4.2\nrequests>=2\n")
    try:
        _, warned = export(mp, "risk", "docker", tmp_path / "deploy")
    finally:
        own.unlink()
    lines = (tmp_path / "deploy" / "requirements.txt").read_text().splitlines()
    assert "scikit-learn==1.4.2" in lines and "requests>=2" in lines
    assert not any(ln.startswith("scikit-learn==") and ln != "scikit-learn==1.4.2"
                   for ln in lines)
    assert any("'requests>=2' is not pinned" in w for w in warned)


def test_out_dir_inside_the_project_is_not_copied_into_itself(mp: Project) -> None:
    out = mp.root / "deploy"
    export(mp, "risk", "docker", out)
    export(mp, "risk", "docker", out)  # again: the previous output is not copied either
    assert not (out / "project" / "deploy").exists()


def test_secrets_are_referenced_never_written(mp: Project, tmp_path: Path) -> None:
    config = mp.root / "tarmac.yaml"
    before = config.read_text()
    config.write_text(before + 'sources:\n  crm: {type: sql, url: '
                      '"postgresql://app:hunter2@db/crm", tables: [customers]}\n'
                      '  shop: {type: sql, url: "postgresql://app:${SHOP_PW}@db/shop", '
                      'tables: [orders]}\n')
    try:
        _, warned = export(mp, "risk", "kubernetes", tmp_path / "deploy")
    finally:
        config.write_text(before)
    out = tmp_path / "deploy"
    for file in [*out.rglob("*.yaml"), *(out / "project").glob("tarmac.yaml")]:
        assert "hunter2" not in file.read_text(), file
    env = {e["name"]: e["valueFrom"] for e in manifests(out)["Deployment"]["spec"]["template"][
        "spec"]["containers"][0]["env"]}
    assert env["SHOP_PW"]["secretKeyRef"]["optional"] is False
    assert "TARMAC_SOURCES_CRM_URL_PASSWORD" in env
    assert any("sources.crm.url" in w and "password" in w for w in warned)
    text = manifests(out)["ConfigMap"]["data"]["tarmac.yaml"]
    assert "${TARMAC_SOURCES_CRM_URL_PASSWORD}@db/crm" in text


def test_model_without_champion_is_exported_with_a_warning(mp: Project, tmp_path: Path) -> None:
    paths, warned = export(mp, "Risk_V2", "kubernetes", tmp_path / "deploy")
    assert any("no champion" in w for w in warned)
    assert any("objects are named 'risk-v2'" in w for w in warned)
    assert manifests(tmp_path / "deploy")["Deployment"]["metadata"]["name"] == "risk-v2"
    assert manifests(tmp_path / "deploy")["Deployment"]["metadata"]["annotations"][
        "tarmac.dev/model"] == "Risk_V2"
    _, warned = export(mp, "risk", "kubernetes", tmp_path / "again")
    assert not any("no champion" in w for w in warned)


def test_several_replicas_on_local_backends_warn(mp: Project, tmp_path: Path) -> None:
    _, warned = export(mp, "risk", "kubernetes", tmp_path / "deploy")
    assert any("every replica gets its own copy" in w for w in warned)
    _, warned = export(mp, "risk", "kubernetes", tmp_path / "one", replicas=1, max_replicas=1)
    assert not any("every replica gets its own copy" in w for w in warned)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "rsik"}, "no registered model named 'rsik'; did you mean 'risk'?"),
    ({"target": "helm"}, "unknown target 'helm'; expected one of: kubernetes, docker"),
    ({"k8s_name": "Bad_Name"}, "'Bad_Name' is not a valid DNS-1123 label"),
    ({"cpu_limit": "two"}, "cpu_limit 'two': expected a CPU quantity"),
    ({"replicas": 0}, "replicas 0: expected 1 or more"),
    ({"cpu_request": "4", "cpu_limit": "2"}, "cpu_request 4 is above cpu_limit 2"),
    ({"memory_limit": "2GB"}, "memory_limit '2GB': expected a memory quantity"),
    ({"replicas": 5, "max_replicas": 3}, "max_replicas 3 is below replicas 5"),
])
def test_bad_inputs_are_named(mp: Project, tmp_path: Path, kwargs: dict[str, Any],
                              message: str) -> None:
    args = {"name": "risk", "target": "kubernetes", **kwargs}
    with pytest.raises(UsageError, match=re.escape(message)):
        export(mp, args.pop("name"), args.pop("target"), tmp_path / "deploy", **args)
    assert not (tmp_path / "deploy" / "kubernetes").exists()


def test_out_dir_that_is_a_file(mp: Project, tmp_path: Path) -> None:
    (tmp_path / "deploy").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        export(mp, "risk", "kubernetes", tmp_path / "deploy")


@pytest.mark.parametrize(("name", "label"), [
    ("churn", "churn"), ("Churn_V2", "churn-v2"), ("2fast", "m-2fast"), ("a..b", "a-b"),
    ("x" * 80, "x" * 63), ("__", "m"),
])
def test_dns_label(name: str, label: str) -> None:
    assert dns_label(name) == label

"""Deploy manifests for a served model: a Docker build context and Kubernetes objects.

``export_manifests`` writes a self-contained build context (a Dockerfile with a non-root user,
a HEALTHCHECK and pinned requirements; a ``.dockerignore``; a copy of the project folder) and,
for ``target="kubernetes"``, the objects to apply: a Deployment (readiness on ``/ready``,
liveness on ``/health``, resource requests and limits, settings from a ConfigMap, secrets from a
Secret *reference*), a Service, a HorizontalPodAutoscaler (CPU and the in-flight requests the
server exports), a PodDisruptionBudget and the ConfigMap holding ``tarmac.yaml``.

Secret values are never written: every ``${VAR}`` the project file uses becomes an environment
variable read from the Secret ``<name>-secrets``, and a password written literally in a URL of
``tarmac.yaml`` is replaced by such a reference in the ConfigMap (with a warning).

Things a user should know but that do not stop the export (a model with no champion yet, a name
that had to be changed to be a valid Kubernetes name, a SQLite catalog behind several replicas)
are issued as ``DeployWarning`` (``warnings.warn``); the CLI prints them.

Example::

    p = tarmac.open(".")
    paths = export_manifests(p, "churn", "kubernetes", "deploy/", image="ghcr.io/acme/churn:1")
    # docker build -t ghcr.io/acme/churn:1 deploy/ && kubectl apply -f deploy/kubernetes/
"""

from __future__ import annotations

import hashlib
import math
import platform
import re
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tarmac.config import CONFIG_FILE, parse_yaml, url_scheme
from tarmac.errors import UsageError
from tarmac.serving import _requirements as reqs

if TYPE_CHECKING:
    from tarmac.project import Project

TARGETS = ("kubernetes", "docker")
PORT = 8000
APP_DIR = "/app"
PROJECT_DIR = f"{APP_DIR}/project"
UID = 10001
INFLIGHT_METRIC = "tarmac_in_flight_requests"  # the gauge the server exports on /metrics
AUDIT_KEY = "TARMAC_AUDIT_KEY"
#: what never goes into the image (also written to .dockerignore)
IGNORED = (".git", ".env", ".venv", "venv", "__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache",
           ".ruff_cache", "bench-data", ".DS_Store")
_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m?)$")
_MEMORY = re.compile(r"^[1-9][0-9]*(\.[0-9]+)?([KMGTPE]i?|k)?$")
#: ``scheme://user:PASSWORD@``: a password written in a URL
_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)([^@/\s]+)@")


class DeployWarning(UserWarning):
    """Something about the exported manifests the user should act on (not an error)."""


def export_manifests(
    project: Project,
    name: str,
    target: str,
    out_dir: Path | str,
    *,
    image: str | None = None,
    replicas: int = 2,
    max_replicas: int = 10,
    workers: int | None = None,
    cpu_request: str = "500m",
    cpu_limit: str = "2",
    memory_request: str = "512Mi",
    memory_limit: str = "2Gi",
    cpu_target: int = 70,
    inflight_target: int = 8,
    k8s_name: str | None = None,
) -> list[Path]:
    """Write the build context (and for ``kubernetes`` the manifests) to serve model ``name``.

    ``image`` is the tag the Deployment runs (default ``<name>:latest``); ``replicas`` is also
    the autoscaler's minimum, ``max_replicas`` its maximum; ``workers`` uvicorn processes per
    pod (default: the CPU limit rounded up); ``cpu_target`` the average CPU utilisation (%) and
    ``inflight_target`` the average in-flight requests per pod the autoscaler keeps.
    ``k8s_name`` names the Kubernetes objects (default: ``name`` made a DNS-1123 label).
    Returns the paths written (the project copy as one folder).

    Raises ``UsageError`` for an unknown target or model, an ``out_dir`` that is a file, or a
    bad number; a model without a champion is exported with a ``DeployWarning``.

    Example::

        export_manifests(p, "churn", "docker", "deploy/")
        # [PosixPath('deploy/Dockerfile'), PosixPath('deploy/.dockerignore'), ...]
    """
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; expected one of: {', '.join(TARGETS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output folder {out} is a file, not a folder",
                         hint="pass a folder (it is created if missing) with -o/--out")
    for label, value, low in (("replicas", replicas, 1), ("max_replicas", max_replicas, 1),
                              ("cpu_target", cpu_target, 1), ("inflight_target",
                                                               inflight_target, 1)):
        if value < low:
            raise UsageError(f"{label} {value}: expected {low} or more")
    if max_replicas < replicas:
        raise UsageError(f"max_replicas {max_replicas} is below replicas {replicas}")
    if workers is not None and workers < 1:
        raise UsageError(f"workers {workers}: expected 1 or more")
    if cpus(cpu_request, "cpu_request") > cpus(cpu_limit, "cpu_limit"):
        raise UsageError(f"cpu_request {cpu_request} is above cpu_limit {cpu_limit}")
    for label, quantity in (("memory_request", memory_request),
                            ("memory_limit", memory_limit)):
        if not _MEMORY.match(quantity):
            raise UsageError(f"{label} {quantity!r}: expected a memory quantity such as 512Mi "
                             "or 2Gi")
    record = project.models.version(name)  # UsageError naming close names when unknown
    if "champion" not in project.models.aliases(name).get(name, {}):
        _warn(f"model '{name}' has no champion yet (latest is v{record.version}): the "
              f"manifests are written anyway because they name no version (the server follows "
              f"the champion alias and picks up `tarmac promote {name} VERSION` without a new "
              "image), but until then /v1/predict/" + name + " answers 503 and /ready fails")
    obj = _object_name(name, k8s_name)
    out.mkdir(parents=True, exist_ok=True)
    raw = (project.root / CONFIG_FILE).read_text(encoding="utf-8")
    config_text, secret_keys = _config_for_cluster(raw)
    _warn_local_backends(project, max_replicas if target == "kubernetes" else 1)
    written = _build_context(project, out, _extras(project, record.flavor), config_text)
    if target == "kubernetes":
        n_workers = workers or max(1, math.ceil(cpus(cpu_limit, "cpu_limit")))
        spec = _Spec(obj=obj, model=name, project=project.name, image=image or f"{obj}:latest",
                     replicas=replicas, max_replicas=max_replicas, workers=n_workers,
                     resources={"requests": {"cpu": cpu_request, "memory": memory_request},
                                "limits": {"cpu": cpu_limit, "memory": memory_limit}},
                     cpu_target=cpu_target, inflight_target=inflight_target,
                     config_text=config_text, secret_keys=secret_keys)
        folder = out / "kubernetes"
        folder.mkdir(exist_ok=True)
        for file, manifest in kubernetes_objects(spec).items():
            path = folder / file
            path.write_text(to_yaml(manifest), encoding="utf-8")
            written.append(path)
    return written


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people: no ``&id001`` anchors, multi-line strings as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(manifest: dict[str, Any]) -> str:
    """A manifest as YAML text (key order kept, no anchors, ``|`` blocks for files)."""
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=100)


def cpus(quantity: str, what: str = "cpu") -> float:
    """A Kubernetes CPU quantity (``"2"``, ``"0.5"``, ``"500m"``) in CPUs; ``UsageError`` if
    it is not one."""
    match = _QUANTITY.match(quantity.strip())
    if match is None or float(match.group(1)) == 0:
        raise UsageError(f"{what} {quantity!r}: expected a CPU quantity such as 2, 0.5 or 500m")
    value = float(match.group(1))
    return value / 1000 if match.group(3) else value


def dns_label(name: str) -> str:
    """``name`` as an RFC 1123 / 1035 label Kubernetes accepts for every object here:
    lowercase letters, digits and ``-``, starting with a letter, at most 63 characters."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    label = re.sub(r"-{2,}", "-", label)
    if not label or not label[0].isalpha():
        label = f"m-{label}".rstrip("-")
    return label[:63].rstrip("-")


def _object_name(name: str, given: str | None) -> str:
    if given is not None:
        if not _LABEL.match(given) or len(given) > 63:
            raise UsageError(f"Kubernetes name {given!r} is not a valid DNS-1123 label "
                             f"(lowercase letters, digits and '-', starting with a letter, at "
                             f"most 63 characters); e.g. {dns_label(given)!r}")
        return given
    obj = dns_label(name)
    if obj != name:
        _warn(f"model name '{name}' is not a valid Kubernetes object name (DNS-1123 label): "
              f"the objects are named '{obj}' (choose another with --k8s-name)")
    return obj


def _warn(message: str) -> None:
    warnings.warn(message, DeployWarning, stacklevel=3)


# -- configuration and secrets ---------------------------------------------------------------


def _config_for_cluster(raw: str) -> tuple[str, dict[str, bool]]:
    """The project file as the image and the ConfigMap hold it, and the Secret keys it needs
    (key -> optional). ``${VAR}`` references stay as they are (filled from the Secret at
    start-up); a password written literally in a URL becomes ``${TARMAC_<KEY_PATH>_PASSWORD}``."""
    text = raw
    for path, value in _strings(parse_yaml(raw) or {}):
        match = _PASSWORD.search(value)
        if match is None or "${" in match.group(2):
            continue
        var = "TARMAC_" + re.sub(r"[^A-Z0-9]+", "_", path.upper()).strip("_") + "_PASSWORD"
        text = text.replace(match.group(0), f"{match.group(1)}${{{var}}}@", 1)
        _warn(f"{CONFIG_FILE}: '{path}' has a password written in its URL; the exported copy "
              f"reads it from the environment variable {var} instead (the Secret key of that "
              f"name); better write ${{{var}}} in {CONFIG_FILE} yourself")
    keys: dict[str, bool] = {}
    for _, value in _strings(parse_yaml(text) or {}):  # a ${VAR} in a comment is not used
        for match in _ENV_REF.finditer(value):
            var, default = match.group(1), match.group(2)
            keys[var] = keys.get(var, True) and default is not None
    keys.setdefault(AUDIT_KEY, True)
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    return text, keys


def _strings(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """(key path, string) for every string value of a parsed YAML document."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _extras(project: Project, flavor: str) -> set[str]:
    """tarmac's extras this project needs in the image: its backends and the model's flavor."""
    extras = set()
    if url_scheme(project.config.catalog) == "postgresql":
        extras.add("postgres")
    if url_scheme(project.config.online_store) == "redis" or url_scheme(
            project.config.streams) == "redis":
        extras.add("redis")
    if url_scheme(project.config.streams) == "kafka":
        extras.add("kafka")
    extras.update(e for e in ("lightgbm", "xgboost") if e in flavor)
    return extras


def _warn_local_backends(project: Project, max_replicas: int) -> None:
    """Warn about local backends behind several replicas and local paths outside the image."""
    if max_replicas > 1:
        local = [key for key in ("catalog", "online_store")
                 if url_scheme(getattr(project.config, key)) == "sqlite"]
        if url_scheme(project.config.lake) in ("", "file"):
            local.append("lake")
        if local:
            _warn(f"{', '.join(local)} {'is a local file' if len(local) == 1 else 'are local'}"
                  f": every replica gets its own copy from the image, so promotions, the "
                  "prediction log and online values are not shared; use PostgreSQL, Redis and "
                  "an object store for more than one replica")
    for key in ("lake", "artifacts"):
        value = getattr(project.config, key)
        path = Path(value.removeprefix("file://"))
        if url_scheme(value) in ("", "file") and not path.is_relative_to(project.root.resolve()):
            _warn(f"{key} {value} is outside the project folder: it is not in the image, mount "
                  f"it in the container at that path")


# -- the build context ---------------------------------------------------------------------------


def _build_context(project: Project, out: Path, extras: set[str], config: str) -> list[Path]:
    """Dockerfile, .dockerignore, requirements.txt, tarmac's source when it runs from a
    checkout, and the project folder (its project file as ``config``: no literal password)."""
    source = reqs.tarmac_source()
    lock = reqs.pinned_requirements("tarmac", extras=extras, skip_root=source is not None)
    own = project.root / "requirements.txt"
    if own.is_file():
        lock = reqs.merge_project_requirements(lock, own)
    for message in lock.warnings:
        _warn(message)
    header = ("# pinned by `tarmac deploy export` from the environment that exported it"
              + (f" (extras: {', '.join(sorted(extras))})" if extras else "") + "\n")
    requirements = out / "requirements.txt"
    requirements.write_text(header + "\n".join(lock.lines) + "\n", encoding="utf-8")
    written = [out / "Dockerfile", out / ".dockerignore", requirements]
    if source is not None:  # tarmac from a checkout: ship its source, install it without deps
        dist = out / "tarmac-dist"
        shutil.rmtree(dist, ignore_errors=True)
        dist.mkdir()
        for file in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / file).is_file():
                shutil.copy2(source / file, dist / file)
        shutil.copytree(source / "src" / "tarmac", dist / "src" / "tarmac",
                        ignore=shutil.ignore_patterns(*IGNORED))
        written.append(dist)
    (out / "Dockerfile").write_text(dockerfile(from_source=source is not None), encoding="utf-8")
    (out / ".dockerignore").write_text("\n".join(["# not sent to `docker build`", *IGNORED,
                                                  "kubernetes/"]) + "\n", encoding="utf-8")
    copy = out / "project"
    shutil.rmtree(copy, ignore_errors=True)
    root, target = project.root.resolve(), out.resolve()

    def ignore(folder: str, names: list[str]) -> Iterable[str]:
        skipped = set(shutil.ignore_patterns(*IGNORED)(folder, names))
        return skipped | {n for n in names if (Path(folder) / n).resolve() == target}

    shutil.copytree(root, copy, ignore=ignore)
    (copy / CONFIG_FILE).write_text(config, encoding="utf-8")
    written.append(copy)
    return written


def dockerfile(*, from_source: bool, python: str | None = None) -> str:
    """The Dockerfile text: slim Python, pinned requirements, a non-root user, a HEALTHCHECK
    on ``/health`` and ``tarmac serve`` on all interfaces."""
    version = python or ".".join(platform.python_version_tuple()[:2])
    install_tarmac = ("COPY tarmac-dist/ /tmp/tarmac-dist/\n"
                      "RUN pip install --no-deps /tmp/tarmac-dist && rm -rf /tmp/tarmac-dist\n"
                      if from_source else "")
    probe = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/health', "
             "timeout=2)")
    return f"""# Written by `tarmac deploy export`. Build: docker build -t IMAGE .
FROM python:{version}-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    OMP_NUM_THREADS=1 TARMAC_PROJECT={PROJECT_DIR}

RUN groupadd --system --gid {UID} tarmac \\
 && useradd --system --uid {UID} --gid tarmac --home-dir {APP_DIR} --shell /usr/sbin/nologin \\
    tarmac
WORKDIR {APP_DIR}

# the exact versions this project was exported with (see requirements.txt)
COPY requirements.txt {APP_DIR}/requirements.txt
RUN pip install --no-cache-dir --requirement {APP_DIR}/requirements.txt
{install_tarmac}
COPY --chown={UID}:{UID} project/ {PROJECT_DIR}/
USER {UID}:{UID}
WORKDIR {PROJECT_DIR}

EXPOSE {PORT}
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "{probe}"]
CMD ["tarmac", "serve", "--host", "0.0.0.0", "--port", "{PORT}"]
"""


# -- Kubernetes objects ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """What the Kubernetes objects are made of."""

    obj: str
    model: str
    project: str
    image: str
    replicas: int
    max_replicas: int
    workers: int
    resources: dict[str, dict[str, str]]
    cpu_target: int
    inflight_target: int
    config_text: str
    secret_keys: dict[str, bool]


def kubernetes_objects(s: _Spec) -> dict[str, dict[str, Any]]:
    """file name -> manifest, for the Deployment, Service, HPA, PDB and ConfigMap."""
    labels = {"app.kubernetes.io/name": "tarmac", "app.kubernetes.io/instance": s.obj,
              "app.kubernetes.io/component": "serving"}
    meta = {"name": s.obj, "labels": labels,
            "annotations": {"tarmac.dev/model": s.model, "tarmac.dev/project": s.project}}
    config_name, secret_name = f"{s.obj}-config", f"{s.obj}-secrets"
    env_data = {"TARMAC_PROJECT": PROJECT_DIR, "TARMAC_ACCESS_LOG": "1",
                "OMP_NUM_THREADS": "1"}
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {**meta, "name": config_name},
              "data": {CONFIG_FILE: s.config_text, **env_data}}
    checksum = hashlib.sha256(yaml.safe_dump(config["data"], sort_keys=True).encode()).hexdigest()
    env: list[dict[str, Any]] = [
        {"name": key, "valueFrom": {"configMapKeyRef": {"name": config_name, "key": key}}}
        for key in env_data]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key,
                                                         "optional": optional}}}
            for key, optional in sorted(s.secret_keys.items())]
    http = {"port": "http"}
    container = {
        "name": "tarmac",
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["tarmac", "serve", "--host", "0.0.0.0", "--port", str(PORT),
                    "--workers", str(s.workers)],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "resources": s.resources,
        "startupProbe": {"httpGet": {"path": "/health", **http}, "periodSeconds": 2,
                         "failureThreshold": 60},
        "readinessProbe": {"httpGet": {"path": "/ready", **http}, "periodSeconds": 5,
                           "timeoutSeconds": 2, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/health", **http}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "volumeMounts": [{"name": "config", "mountPath": f"{PROJECT_DIR}/{CONFIG_FILE}",
                          "subPath": CONFIG_FILE, "readOnly": True}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": s.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "checksum/config": checksum, "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "fsGroup": UID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {
                        "name": config_name, "items": [{"key": CONFIG_FILE,
                                                        "path": CONFIG_FILE}]}}],
                },
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"type": "ClusterIP", "selector": labels,
                        "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                   "protocol": "TCP"}]}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
           "spec": {
               "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.obj},
               "minReplicas": s.replicas, "maxReplicas": s.max_replicas,
               "metrics": [
                   {"type": "Resource", "resource": {"name": "cpu", "target": {
                       "type": "Utilization", "averageUtilization": s.cpu_target}}},
                   {"type": "Pods", "pods": {"metric": {"name": INFLIGHT_METRIC}, "target": {
                       "type": "AverageValue", "averageValue": str(s.inflight_target)}}}],
               "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}
    return {"configmap.yaml": config, "deployment.yaml": deployment, "service.yaml": service,
            "hpa.yaml": hpa, "pdb.yaml": pdb}

"""``tarmac deploy export``: write a Docker build context and Kubernetes manifests for a model
(a subcommand of the ``deploy`` group in ``_deploy``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from tarmac.cli import open_project
from tarmac.cli._deploy import deploy_app
from tarmac.cli._output import console, err_console, esc


def export(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name (its champion is served)."),
    target: str = typer.Option("kubernetes", "--target", "-t",
                               help="kubernetes (build context + manifests) or docker (build "
                                    "context only)."),
    out: Path = typer.Option(Path("deploy"), "--out", "-o",
                             help="Folder to write to (created if missing)."),
    image: str = typer.Option(None, "--image",
                              help="Image the Deployment runs (default NAME:latest)."),
    replicas: int = typer.Option(2, "--replicas", help="Replicas (the autoscaler's minimum)."),
    max_replicas: int = typer.Option(10, "--max-replicas", help="The autoscaler's maximum."),
    workers: int = typer.Option(None, "--workers",
                                help="Server processes per pod (default: the CPU limit)."),
    cpu: str = typer.Option("500m", "--cpu", help="CPU request per pod."),
    cpu_limit: str = typer.Option("2", "--cpu-limit", help="CPU limit per pod."),
    memory: str = typer.Option("512Mi", "--memory", help="Memory request per pod."),
    memory_limit: str = typer.Option("2Gi", "--memory-limit", help="Memory limit per pod."),
    k8s_name: str = typer.Option(None, "--k8s-name",
                                 help="Name of the Kubernetes objects (default: the model "
                                      "name as a DNS-1123 label)."),
) -> None:
    """Write a Dockerfile (pinned requirements, non-root, healthcheck) and, for kubernetes, a
    Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget and ConfigMap.

    Secrets are referenced from the Secret NAME-secrets, never written. See docs/deploy.md.
    """
    from tarmac.serving.manifests import DeployWarning, export_manifests

    p = open_project(ctx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeployWarning)
        paths = export_manifests(p, name, target, out, image=image, replicas=replicas,
                                 max_replicas=max_replicas, workers=workers, cpu_request=cpu,
                                 cpu_limit=cpu_limit, memory_request=memory,
                                 memory_limit=memory_limit, k8s_name=k8s_name)
    for w in caught:
        if issubclass(w.category, DeployWarning):
            err_console.print(f"[yellow]warning:[/yellow] {esc(w.message)}", soft_wrap=True)
    console.print(f"[green]wrote[/green] {len(paths)} paths to {esc(out)}:")
    for path in paths:
        console.print(f"  {esc(path)}{'/' if path.is_dir() else ''}", soft_wrap=True)
    tag = image or "IMAGE"
    console.print(f"  next: [bold]docker build -t {esc(tag)} {esc(out)}[/bold]", soft_wrap=True)
    if target == "kubernetes":
        secrets = _secret_keys(out / "kubernetes" / "deployment.yaml")
        if secrets:
            obj = secrets[0][0]
            args = " ".join(f"--from-literal={k}=..." for _, k in secrets)
            console.print(f"        [bold]kubectl create secret generic {esc(obj)} "
                          f"{esc(args)}[/bold]", soft_wrap=True)
        console.print(f"        [bold]kubectl apply -f {esc(out / 'kubernetes')}[/bold]",
                      soft_wrap=True)


def _secret_keys(deployment: Path) -> list[tuple[str, str]]:
    """(secret name, key) of every secret the Deployment reads, as written."""
    import yaml

    manifest = yaml.safe_load(deployment.read_text(encoding="utf-8"))
    env = manifest["spec"]["template"]["spec"]["containers"][0].get("env", [])
    return [(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in env if "secretKeyRef" in e.get("valueFrom", {})]


deploy_app.command("export")(export)

"""``tarmac models import``: register an MLflow model or an ONNX file as a Tarmac version."""

from __future__ import annotations

import typer

from tarmac.cli import open_project
from tarmac.cli._models import models_app
from tarmac.cli._output import console, esc, print_json
from tarmac.errors import TarmacError


@models_app.command("import")
def models_import(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="PATH_OR_URI",
                                 help="An MLflow model directory, a models:/NAME/VERSION URI "
                                      "(through MLFLOW_TRACKING_URI) or an .onnx file."),
    name: str = typer.Option(..., "--name", "-n", help="The Tarmac model name to register."),
    signature: str = typer.Option(None, "--signature", "-s", metavar="COL:TYPE,...",
                                  help="The input columns, e.g. 'tenure:float64,plan:string' "
                                       "(needed when the model does not carry them)."),
    task: str = typer.Option(None, "--task", help="binary, multiclass or regression "
                                                  "(default: inferred)."),
    description: str = typer.Option(None, "--description", help="Describe the version."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Register a model trained elsewhere as the next version of NAME, without retraining.

    Example: tarmac models import mlruns/0/RUN/artifacts/model --name churn
    """
    p = open_project(ctx)
    record = p.models.import_model(source, name, signature=signature, task=task,
                                   description=description)
    if as_json:
        print_json(record.to_dict())
        return
    inputs = ", ".join(f"{i['name']}:{i['type']}" for i in record.signature["inputs"])
    console.print(f"[green]registered[/green] [bold]{esc(name)} v{record.version}[/bold] "
                  f"({record.flavor} {record.task}) from {esc(source)}")
    console.print(f"  inputs: {esc(inputs)}")
    try:
        declared = name in p.models.declared()
    except TarmacError:  # definitions.py does not import: the version is registered anyway
        declared = False
    if declared:
        console.print(f"  declared in definitions.py: its features "
                      f"'{esc(str(record.spec.get('features')))}', holdout and gates come with it")
        console.print(f"  next: [bold]tarmac validate {esc(name)} {record.version}[/bold], then "
                      f"[bold]tarmac promote {esc(name)} {record.version}[/bold]")
    else:
        console.print(f"  next: [bold]tarmac promote {esc(name)} {record.version} --force "
                      f"--reason \"imported\"[/bold] ('{esc(name)}' is not declared in "
                      "definitions.py, so no gates can run), then "
                      f"[bold]tarmac score {esc(name)} ...[/bold]")

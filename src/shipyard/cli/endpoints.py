"""``shipyard endpoints``: real-time endpoints — create, list, show, update, scale, invoke,
delete; and ``shipyard models promote``.

``create`` and ``update`` take an endpoint config by name (``--config``), or make one on the
spot from a registry version (``--model GROUP:VERSION``) or, for dev, an artifact
(``--artifact PATH --flavor F``). Text from users (reasons, names) is printed as text, never
as Rich markup.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli._common import JsonOption, err, out, print_json, session
from shipyard.cli.jobs import ProjectOption
from shipyard.sdk import Conflict, Endpoint, Hosting

endpoints = typer.Typer(
    help="Real-time endpoints: fleets of model servers behind the gateway.",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="The endpoint's name (unique on the platform)")]
ConfigOption = Annotated[str | None, typer.Option("--config", help="An endpoint config's name")]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="A registry version, GROUP:VERSION")
]
ArtifactOption = Annotated[
    str | None, typer.Option("--artifact", help="An artifact path (dev only; with --flavor)")
]
FlavorOption = Annotated[str, typer.Option(help="The artifact's flavor")]
TypeOption = Annotated[str, typer.Option("--instance-type", help="e.g. cpu.small")]
CountOption = Annotated[int, typer.Option("--count", min=0, help="Instances of the variant")]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until the endpoint settles")
]
LIST_COLUMNS = ("name", "environment", "status", "current_config", "config_name", "reason")
VARIANT_COLUMNS = (
    "config",
    "variant",
    "model",
    "version",
    "type",
    "weight",
    "instances",
    "replicas",
)


def _text(value: Any) -> str:
    if value is None or value == "" or value == {} or value == []:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    table = Table(*columns, show_edge=False, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*(escape(_text(row.get(c))) for c in columns))
    out.print(table, highlight=False)


def emit_endpoint(endpoint: Endpoint, as_json: bool) -> None:
    data = endpoint.as_dict()
    if as_json:
        print_json(data)
        return
    for key in ("name", "environment", "status", "reason", "current_config", "config_name"):
        out.print(f"[bold]{key}[/]: {escape(_text(data.get(key)))}", highlight=False)
    deploy = (data.get("progress") or {}).get("deploy")
    if deploy:
        out.print(
            f"[bold]deployment[/]: {escape(str(deploy.get('phase')))} "
            f"{float(deploy.get('share', 0)):.0%} on {escape(str(deploy.get('target')))}",
            highlight=False,
        )
    out.print(f"[bold]invocation_url[/]: {escape(data['invocation_url'])}", highlight=False)
    rows = [
        {
            "config": v["config_name"],
            "variant": v["name"] + (" (shadow)" if v.get("shadow") else ""),
            "model": v["model"],
            "version": v["model_version"],
            "type": v["instance_type"] + (" serverless" if v.get("serverless") else ""),
            "weight": f"{v['weight']:.2f}",
            "instances": f"{v['current_instance_count']}/{v['desired_instance_count']}",
            "replicas": " ".join(f"{r['port']}:{r['status']}" for r in v.get("replicas", [])),
        }
        for v in data.get("variants", [])
    ]
    _table(VARIANT_COLUMNS, rows)


def _parse_model(text: str) -> tuple[str, int]:
    group, sep, version = text.rpartition(":")
    if not sep or not group or not version.isdigit():
        raise typer.BadParameter(f"expected GROUP:VERSION, got {text!r}", param_hint="--model")
    return group, int(version)


def _config_for(
    hosting: Hosting,
    endpoint: str,
    *,
    config: str | None,
    model: str | None,
    artifact: str | None,
    flavor: str,
    instance_type: str,
    count: int,
    serverless: bool,
    capture: float | None = None,
) -> str:
    """The config to deploy: the one named, or a new one for a model or an artifact."""
    given = [x for x in (config, model, artifact) if x is not None]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --config, --model GROUP:VERSION, --artifact")
    if config is not None:
        return config
    suffix = secrets.token_hex(3)
    if model is not None:
        group, version = _parse_model(model)
        model_name = _slug(f"{group}-v{version}")
        create: dict[str, Any] = {"group": group, "version": version}
    else:
        model_name = _slug(f"{endpoint}-{suffix}")
        create = {"artifact_path": artifact, "flavor": flavor}
    with contextlib.suppress(Conflict):  # made earlier for this version: reuse it
        hosting.create_model(model_name, **create)
    variant: dict[str, Any] = {
        "model": model_name,
        "instance_type": instance_type,
        "initial_instance_count": count,
    }
    if serverless:
        variant["serverless"] = {}
    name = _slug(f"{endpoint}-{suffix}")
    data_capture = None if capture is None else {"enabled": True, "sampling_percent": capture}
    hosting.create_config(name, [variant], data_capture=data_capture)
    return name


def _slug(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in text.lower()).strip("-")
    return cleaned[:63].rstrip("-") or "model"


@endpoints.command("create")
def create(
    name: NameArg,
    project: ProjectOption,
    config: ConfigOption = None,
    model: ModelOption = None,
    artifact: ArtifactOption = None,
    flavor: FlavorOption = "sklearn",
    instance_type: TypeOption = "cpu.small",
    count: CountOption = 1,
    env: Annotated[str, typer.Option("--env", help="dev, staging or prod")] = "dev",
    serverless: Annotated[
        bool, typer.Option("--serverless", help="Scale to zero when idle")
    ] = False,
    capture: Annotated[
        float | None,
        typer.Option(
            min=0, max=100, help="Capture this % of requests and answers (for monitoring)"
        ),
    ] = None,
    wait: WaitOption = True,
    as_json: JsonOption = False,
) -> None:
    """Create an endpoint from a config, a registry version or (dev) an artifact.

    Example: shipyard endpoints create churn-dev -p ml/churn --model churn:3 --count 2
    """
    with session() as client:
        hosting = client.hosting(project)
        config_name = _config_for(
            hosting,
            name,
            config=config,
            model=model,
            artifact=artifact,
            flavor=flavor,
            instance_type=instance_type,
            count=count,
            serverless=serverless,
            capture=capture,
        )
        endpoint = hosting.create_endpoint(name, config_name, environment=env, wait=wait)
        emit_endpoint(endpoint, as_json)


@endpoints.command("ls")
def ls(project: ProjectOption, as_json: JsonOption = False) -> None:
    """List the project's endpoints."""
    with session() as client:
        found = client.hosting(project).endpoints()
    if as_json:
        print_json(found)
        return
    _table(LIST_COLUMNS, found)


@endpoints.command("show")
def show(name: NameArg, project: ProjectOption, as_json: JsonOption = False) -> None:
    """Show an endpoint: status, reason, variants with their instances and replicas."""
    with session() as client:
        emit_endpoint(client.hosting(project).endpoint(name), as_json)


@endpoints.command("update")
def update(
    name: NameArg,
    project: ProjectOption,
    config: ConfigOption = None,
    model: ModelOption = None,
    artifact: ArtifactOption = None,
    flavor: FlavorOption = "sklearn",
    instance_type: TypeOption = "cpu.small",
    count: CountOption = 1,
    strategy: Annotated[
        str, typer.Option(help="blue_green, canary, linear or all_at_once")
    ] = "blue_green",
    bake_s: Annotated[float, typer.Option(min=0, help="Seconds to watch after a shift")] = 60,
    max_error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Roll back above this 4xx+5xx rate")
    ] = 0.05,
    canary_percent: Annotated[float, typer.Option(help="canary: the first share")] = 10,
    linear_step_percent: Annotated[float, typer.Option(help="linear: the step")] = 20,
    linear_interval_s: Annotated[float, typer.Option(help="linear: seconds per step")] = 30,
    wait: WaitOption = True,
    as_json: JsonOption = False,
) -> None:
    """Deploy a new config (or model) safely; it rolls back by itself on failure.

    The new fleet starts beside the old one; traffic shifts by --strategy; a new fleet that
    fails its health checks or errs above --max-error-rate while baking is rolled back.

    Example: shipyard endpoints update churn-dev -p ml/churn --model churn:4 --bake-s 120
    """
    deployment = {
        "strategy": strategy,
        "bake_s": bake_s,
        "max_error_rate": max_error_rate,
        "canary_percent": canary_percent,
        "linear_step_percent": linear_step_percent,
        "linear_interval_s": linear_interval_s,
    }
    with session() as client:
        hosting = client.hosting(project)
        config_name = _config_for(
            hosting,
            name,
            config=config,
            model=model,
            artifact=artifact,
            flavor=flavor,
            instance_type=instance_type,
            count=count,
            serverless=False,
        )
        endpoint = hosting.update_endpoint(
            name, config_name=config_name, deployment=deployment, wait=wait
        )
        emit_endpoint(endpoint, as_json)


@endpoints.command("scale")
def scale(
    name: NameArg,
    project: ProjectOption,
    variant: Annotated[str, typer.Option(help="The variant")] = "AllTraffic",
    count: Annotated[int | None, typer.Option(min=0, help="Set the instance count now")] = None,
    min_count: Annotated[int | None, typer.Option("--min", min=0, help="Autoscaling min")] = None,
    max_count: Annotated[int | None, typer.Option("--max", min=1, help="Autoscaling max")] = None,
    target_invocations: Annotated[
        float | None, typer.Option(help="Target invocations per instance per minute")
    ] = None,
    target_cpu: Annotated[float | None, typer.Option(help="Target CPU percent")] = None,
    scale_out_cooldown_s: Annotated[float, typer.Option(min=0)] = 60,
    scale_in_cooldown_s: Annotated[float, typer.Option(min=0)] = 300,
    as_json: JsonOption = False,
) -> None:
    """Set a variant's instance count, or its target-tracking autoscaling policy.

    Example: shipyard endpoints scale churn-dev -p ml/churn --min 1 --max 4
    --target-invocations 600
    """
    policy = None
    if target_invocations is not None or target_cpu is not None:
        policy = {
            "min_instance_count": 1 if min_count is None else min_count,
            "max_instance_count": 4 if max_count is None else max_count,
            "target_invocations_per_instance_per_minute": target_invocations,
            "target_cpu_percent": target_cpu,
            "scale_out_cooldown_s": scale_out_cooldown_s,
            "scale_in_cooldown_s": scale_in_cooldown_s,
        }
        policy = {k: v for k, v in policy.items() if v is not None}
    elif count is None:
        raise typer.BadParameter("give --count N, or --target-invocations/--target-cpu")
    with session() as client:
        endpoint = client.hosting(project).scale(name, variant, count=count, policy=policy)
        emit_endpoint(endpoint, as_json)


@endpoints.command("delete")
def delete(
    name: NameArg,
    project: ProjectOption,
    force: Annotated[
        bool, typer.Option("--force", help="prod: a platform admin's override")
    ] = False,
    wait: WaitOption = True,
    as_json: JsonOption = False,
) -> None:
    """Delete an endpoint and stop its replicas (prod: refused unless an admin forces it)."""
    with session() as client:
        client.hosting(project).delete_endpoint(name, force=force, wait=wait)
    if as_json:
        print_json({"name": name, "deleted": True})
        return
    err.print(f"Deleted endpoint {escape(name)}", highlight=False)


@endpoints.command("invoke")
def invoke(
    name: NameArg,
    data: Annotated[str | None, typer.Option(help="The request body (JSON unless typed)")] = None,
    file: Annotated[
        Path | None, typer.Option(help="Read the body from this file", dir_okay=False)
    ] = None,
    content_type: Annotated[str, typer.Option(help="The body's type")] = "application/json",
    variant: Annotated[str | None, typer.Option(help="Target this variant")] = None,
    queue: Annotated[
        bool, typer.Option("--async", help="Queue it (InvokeEndpointAsync); print where")
    ] = False,
    input_location: Annotated[
        str | None, typer.Option(help="--async: an artifact of the project as the input")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="--async: wait for the answer and print it")
    ] = False,
) -> None:
    """Invoke an endpoint through the gateway and print its answer.

    Example: shipyard endpoints invoke churn-dev --data '{"features": [25, 2, 0.0]}'
    """
    if queue:
        _invoke_async(
            name,
            _body(data, file, required=input_location is None),
            content_type,
            input_location,
            wait,
        )
        return
    body = _body(data, file, required=True)
    with session() as client:
        answer = client.predictor(name).predict(
            body, content_type=content_type, target_variant=variant
        )
    _print_answer(answer)


def _body(data: str | None, file: Path | None, *, required: bool) -> bytes | None:
    if data is not None and file is not None:
        raise typer.BadParameter("give --data or --file, not both")
    if data is None and file is None:
        if required:
            raise typer.BadParameter("give --data or --file")
        return None
    return data.encode() if data is not None else file.read_bytes()  # type: ignore[union-attr]


def _invoke_async(
    name: str, body: bytes | None, content_type: str, input_location: str | None, wait: bool
) -> None:
    with session() as client:
        queued = client.predictor(name).predict_async(
            body, input_location=input_location, content_type=content_type
        )
        if wait:
            _print_answer(queued.result())
            return
    print_json(
        {
            "inference_id": queued.inference_id,
            "output_location": queued.output_location,
            "failure_location": queued.failure_location,
        }
    )


def _print_answer(answer: object) -> None:
    if isinstance(answer, bytes):
        sys.stdout.buffer.write(answer)
        return
    print_json(answer)


@endpoints.command("async-invocations")
def async_invocations(
    name: NameArg,
    project: ProjectOption,
    status: Annotated[
        str | None, typer.Option(help="Only Queued, Running, Completed or Failed")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The endpoint's queued and finished asynchronous requests, newest first.

    Example: shipyard endpoints async-invocations churn-dev -p ml/churn
    """
    with session() as client:
        rows = client.hosting(project).async_invocations(name, status=status)
    if as_json:
        print_json(rows)
        return
    _table(("inference_id", "status", "variant", "attempts", "output_path", "error"), rows)


def promote(
    group: Annotated[str, typer.Argument(help="The model group's name")],
    version: Annotated[int, typer.Argument(min=1, help="A version number")],
    project: ProjectOption,
    env: Annotated[str, typer.Option("--env", help="dev, staging or prod")],
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Default: GROUP-ENV")] = None,
    instance_type: TypeOption = "cpu.small",
    count: Annotated[int, typer.Option("--count", min=1, help="Instances")] = 1,
    predict: Annotated[
        str, typer.Option(help="predict, or proba: a classifier's positive-class score")
    ] = "predict",
    label: Annotated[
        str | None, typer.Option(help="The model_version answers carry (default vVERSION)")
    ] = None,
    capture: Annotated[
        float | None,
        typer.Option(
            min=0, max=100, help="Capture this % of traffic (default: as the endpoint does now)"
        ),
    ] = None,
    wait: WaitOption = True,
    as_json: JsonOption = False,
) -> None:
    """Promote a version into an environment: verify its bytes, deploy, invoke its example,
    roll back on failure. prod needs a Succeeded promotion to staging and an engineer.

    Example: shipyard models promote churn 23 -p ml/churn --env staging
    """
    from shipyard.sdk import DeploymentFailed

    with session() as client:
        hosting = client.hosting(project)
        try:
            run = hosting.promote(
                group,
                version,
                env,
                endpoint_name=endpoint,
                instance_type=instance_type,
                instance_count=count,
                predict=predict,
                model_version_label=label,
                data_capture=(
                    None if capture is None else {"enabled": True, "sampling_percent": capture}
                ),
                wait=wait,
            )
        except DeploymentFailed as failed:
            if failed.promotion is None:
                raise
            _emit_promotion(failed.promotion, as_json)
            raise typer.Exit(1) from failed
    _emit_promotion(run, as_json)


def _emit_promotion(run: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(run)
        return
    out.print(
        f"[bold]promotion[/] {escape(run['id'])}: {escape(run['group'])} v{run['version']} → "
        f"{escape(run['environment'])} ({escape(run['endpoint_name'])}): "
        f"[bold]{escape(run['status'])}[/]",
        highlight=False,
    )
    rows = [{**step, "detail": step.get("detail", "")} for step in run.get("steps", [])]
    _table(("step", "status", "detail"), rows)
    if run.get("reason"):
        out.print(f"[bold]reason[/]: {escape(run['reason'])}", highlight=False)


def emit_promotions(runs: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(runs)
        return
    rows = [
        {**r, "version": f"{r['group']} v{r['version']}", "steps": _steps(r["steps"])} for r in runs
    ]
    _table(("id", "version", "environment", "endpoint_name", "status", "steps"), rows)


def _steps(steps: list[dict[str, Any]]) -> str:
    return " ".join(f"{s['step']}:{s['status']}" for s in steps)


def promotions(
    project: ProjectOption,
    group: Annotated[str | None, typer.Argument(help="Only this model group")] = None,
    version: Annotated[int | None, typer.Argument(min=1, help="Only this version")] = None,
    as_json: JsonOption = False,
) -> None:
    """List promotions, newest first, with their steps."""
    with session() as client:
        emit_promotions(client.hosting(project).promotions(group, version), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(endpoints, name="endpoints")

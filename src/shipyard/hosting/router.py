"""Routes of hosting: hosted models, endpoint configs, endpoints, promotions.

``models`` under a project belongs to the registry, so deployable models are
``hosted-models``. Invocations are not here: they go to the gateway (``gateway_url`` of
``GET /api/v1/info``), which never touches this process.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Response, status
from fastapi.responses import StreamingResponse

from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.hosting import schemas
from shipyard.hosting.models import AsyncInvocation, EndpointConfig, HostedModel, Promotion
from shipyard.hosting.service import config_spec, model_label
from shipyard.security.permissions import Permission
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.router import download_response

router = APIRouter(prefix="/api/v1/projects/{team}/{project}", tags=["hosting"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.ENDPOINT_READ))]
Deployer = Annotated[ProjectAccess, Depends(project_access(Permission.ENDPOINT_DEPLOY))]
Name = Annotated[str, Path(max_length=63, description="a resource name")]
Group = Annotated[str, Path(max_length=128, description="a model group's name")]
Number = Annotated[int, Path(ge=1, le=2**31 - 1, description="a version number")]


def _may_promote(access: ProjectAccess) -> bool:
    """Staging and prod need the engineer role (or lead or admin), on the key too."""
    return access.principal.can(
        Permission.ENDPOINT_PROMOTE, team_id=access.team.id, project_id=access.project.id
    )


def _model(row: HostedModel) -> schemas.HostedModelOut:
    return schemas.HostedModelOut(
        name=row.name,
        source=dict(row.source),
        flavor=row.flavor,
        predict=row.predict,
        environment=dict(row.environment or {}),
        model_version=model_label(row),
        tags=dict(row.tags or {}),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _config(row: EndpointConfig) -> schemas.EndpointConfigOut:
    spec = config_spec(row)
    return schemas.EndpointConfigOut(
        name=row.name,
        variants=spec.variants,
        shadow=spec.shadow,
        shadow_percent=spec.shadow_percent,
        data_capture=spec.data_capture,
        tags=dict(row.tags or {}),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _promotion(row: Promotion) -> schemas.PromotionOut:
    steps = [{k: v for k, v in step.items() if k != "request"} for step in row.steps]
    return schemas.PromotionOut(
        id=row.id,
        group=row.group_name,
        version=row.version,
        environment=schemas.Environment(row.environment),
        endpoint_name=row.endpoint_name,
        status=schemas.PromotionStatus(row.status),
        steps=steps,
        reason=row.reason,
        requested_by=row.requested_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


# --- hosted models ---------------------------------------------------------------------------


@router.post("/hosted-models", status_code=status.HTTP_201_CREATED)
def create_hosted_model(
    body: schemas.HostedModelCreate, access: Deployer, platform: PlatformDep
) -> schemas.HostedModelOut:
    """Make a registry version (or, for dev, an artifact and a flavor) deployable."""
    with platform.db.transaction() as s:
        row = platform.hosting.create_model(s, access.project.id, body, access.principal.username)
        return _model(row)


@router.get("/hosted-models")
def list_hosted_models(access: Readable, platform: PlatformDep) -> list[schemas.HostedModelOut]:
    """The project's deployable models."""
    with platform.db.read() as s:
        return [_model(row) for row in platform.hosting.models(s, access.project.id)]


@router.get("/hosted-models/{name}")
def get_hosted_model(name: Name, access: Readable, platform: PlatformDep) -> schemas.HostedModelOut:
    """One deployable model."""
    with platform.db.read() as s:
        return _model(platform.hosting.model(s, access.project.id, name))


@router.delete("/hosted-models/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_hosted_model(name: Name, access: Deployer, platform: PlatformDep) -> Response:
    """Delete a model no endpoint config uses (409 naming the configs otherwise)."""
    with platform.db.transaction() as s:
        platform.hosting.delete_model(s, access.project.id, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- endpoint configs ------------------------------------------------------------------------


@router.post("/endpoint-configs", status_code=status.HTTP_201_CREATED)
def create_endpoint_config(
    body: schemas.EndpointConfigCreate, access: Deployer, platform: PlatformDep
) -> schemas.EndpointConfigOut:
    """An immutable config: production variants, an optional shadow, data capture."""
    with platform.db.transaction() as s:
        row = platform.hosting.create_config(s, access.project.id, body, access.principal.username)
        return _config(row)


@router.get("/endpoint-configs")
def list_endpoint_configs(
    access: Readable, platform: PlatformDep
) -> list[schemas.EndpointConfigOut]:
    """The project's endpoint configs."""
    with platform.db.read() as s:
        return [_config(row) for row in platform.hosting.configs(s, access.project.id)]


@router.get("/endpoint-configs/{name}")
def get_endpoint_config(
    name: Name, access: Readable, platform: PlatformDep
) -> schemas.EndpointConfigOut:
    """One endpoint config."""
    with platform.db.read() as s:
        return _config(platform.hosting.config(s, access.project.id, name))


@router.delete("/endpoint-configs/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_endpoint_config(name: Name, access: Deployer, platform: PlatformDep) -> Response:
    """Delete a config no endpoint uses (409 naming the endpoints otherwise)."""
    with platform.db.transaction() as s:
        platform.hosting.delete_config(s, access.project.id, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- endpoints -------------------------------------------------------------------------------


@router.post("/endpoints", status_code=status.HTTP_201_CREATED)
async def create_endpoint(
    body: schemas.EndpointCreate, access: Deployer, platform: PlatformDep
) -> schemas.EndpointOut:
    """Create an endpoint from a config; it is Creating until its replicas answer."""
    row = await platform.hosting.create_endpoint(
        platform.db,
        access.team.id,
        access.project.id,
        body,
        access.principal.username,
        may_promote=_may_promote(access),
    )
    with platform.db.read() as s:
        return platform.hosting.view(s, row)


@router.get("/endpoints")
def list_endpoints(access: Readable, platform: PlatformDep) -> list[schemas.EndpointSummary]:
    """The project's endpoints."""
    with platform.db.read() as s:
        return [
            schemas.EndpointSummary.model_validate(row)
            for row in platform.hosting.endpoints(s, access.project.id)
        ]


@router.get("/endpoints/{name}")
def get_endpoint(name: Name, access: Readable, platform: PlatformDep) -> schemas.EndpointOut:
    """One endpoint: status, reason, and each variant's replicas and instance counts."""
    with platform.db.read() as s:
        return platform.hosting.view(s, platform.hosting.endpoint(s, access.project.id, name))


@router.patch("/endpoints/{name}", status_code=status.HTTP_202_ACCEPTED)
async def update_endpoint(
    name: Name, body: schemas.EndpointUpdate, access: Deployer, platform: PlatformDep
) -> schemas.EndpointOut:
    """Deploy a new config (with a deployment policy), or change scaling or tags."""
    row = await platform.hosting.update_endpoint(
        platform.db,
        access.project.id,
        name,
        body,
        access.principal.username,
        may_promote=_may_promote(access),
    )
    with platform.db.read() as s:
        return platform.hosting.view(s, row)


@router.delete("/endpoints/{name}", status_code=status.HTTP_202_ACCEPTED)
def delete_endpoint(
    name: Name,
    access: Deployer,
    platform: PlatformDep,
    force: Annotated[bool, Query(description="prod: a platform admin's override")] = False,
) -> schemas.EndpointOut:
    """Delete an endpoint (prod: refused unless a platform admin passes force=true)."""
    with platform.db.transaction() as s:
        row = platform.hosting.delete_endpoint(
            s,
            access.project.id,
            name,
            access.principal.username,
            force=force,
            platform_admin=access.principal.is_platform_admin,
        )
        view = platform.hosting.view(s, row)
    platform.hosting.wake()
    return view


# --- asynchronous inference (requests are queued through the gateway) -----------------------

# Whoever may invoke an endpoint may follow what became of its requests (an invoker key
# included, which cannot read the project's artifacts otherwise).
Invoker = Annotated[ProjectAccess, Depends(project_access(Permission.ENDPOINT_INVOKE))]
InferenceId = Annotated[str, Path(max_length=64, description="the request's InferenceId")]


def _async(row: AsyncInvocation) -> schemas.AsyncInvocationOut:
    return schemas.AsyncInvocationOut(
        inference_id=row.inference_id,
        endpoint=row.endpoint_name,
        status=schemas.AsyncInvocationStatus(row.status),
        variant=row.variant,
        input_path=row.input_path,
        input_version=row.input_version,
        output_path=row.output_path,
        failure_path=row.failure_path,
        error=row.error,
        attempts=row.attempts,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        finished_at=row.finished_at,
    )


@router.get("/endpoints/{name}/async-invocations")
def list_async_invocations(
    name: Name,
    access: Invoker,
    platform: PlatformDep,
    status: schemas.AsyncInvocationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.AsyncInvocationOut]:
    """The endpoint's queued and finished asynchronous requests, newest first."""
    with platform.db.read() as s:
        rows = platform.hosting.async_invocations(
            s, access.project.id, name, status.value if status else None, limit
        )
        return [_async(row) for row in rows]


@router.get("/endpoints/{name}/async-invocations/{inference_id}")
def get_async_invocation(
    name: Name, inference_id: InferenceId, access: Invoker, platform: PlatformDep
) -> schemas.AsyncInvocationOut:
    """One asynchronous request: Queued, Running, Completed or Failed (with the error)."""
    with platform.db.read() as s:
        return _async(platform.hosting.async_invocation(s, access.project.id, name, inference_id))


@router.get(
    "/endpoints/{name}/async-invocations/{inference_id}/result",
    response_class=StreamingResponse,
)
async def get_async_result(
    name: Name, inference_id: InferenceId, access: Invoker, platform: PlatformDep
) -> StreamingResponse:
    """The model's answer (Completed) or the error document (Failed); 409 before that."""

    def find() -> ArtifactVersion:
        with platform.db.read() as s:
            return platform.hosting.async_result(s, access.project.id, name, inference_id)

    return await download_response(platform, await anyio.to_thread.run_sync(find))


# --- promotions ------------------------------------------------------------------------------


@router.post("/models/{group}/versions/{version}/promote", status_code=status.HTTP_202_ACCEPTED)
def promote_version(
    group: Group,
    version: Number,
    body: schemas.PromotionCreate,
    access: Deployer,
    platform: PlatformDep,
) -> schemas.PromotionOut:
    """Promote a version into an environment: verify, deploy, test, roll back on failure."""
    with platform.db.transaction() as s:
        row = platform.hosting.start_promotion(
            s,
            access.project.id,
            group,
            version,
            body,
            access.principal.username,
            team_id=access.team.id,
            may_promote=_may_promote(access),
        )
        out = _promotion(row)
    platform.endpoint_controller.run_promotion(row.id)
    return out


@router.get("/promotions")
def list_promotions(
    access: Readable,
    platform: PlatformDep,
    group: Annotated[str | None, Query(max_length=128)] = None,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.PromotionOut]:
    """The project's promotions, newest first, each with its steps."""
    with platform.db.read() as s:
        rows = platform.hosting.promotions(s, access.project.id, group, version, limit)
        return [_promotion(row) for row in rows]


@router.get("/promotions/{promotion_id}")
def get_promotion(
    promotion_id: Annotated[str, Path(max_length=32)], access: Readable, platform: PlatformDep
) -> schemas.PromotionOut:
    """One promotion with its steps."""
    with platform.db.read() as s:
        return _promotion(platform.hosting.promotion(s, access.project.id, promotion_id))

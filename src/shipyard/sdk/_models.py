"""The model registry of one project: groups, versions, approval, model cards, lineage.

A **group** holds the versions of one model, numbered 1, 2, 3… Registering a version hashes
its files into a manifest and scans them for unsafe pickles: a dangerous finding makes it
``Blocked`` for good, otherwise it is ``PendingManualApproval`` until a lead or admin other
than its registrant approves or rejects it (the four-eyes rule: deciding on one's own version
is ``PermissionDenied``). Its model card can be edited while it is pending and is frozen
after the decision (an edit is then ``Conflict``).
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from urllib.parse import quote

from shipyard.sdk._artifacts import split_project
from shipyard.sdk._exceptions import Conflict, NotFound
from shipyard.sdk._hosting import Predictor
from shipyard.sdk._transport import mapped_transport_errors, raise_for_error

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

CARD_FIELDS = frozenset(
    {
        "base_revision",
        "intended_use",
        "risk_rating",
        "training_data",
        "evaluation_notes",
        "ethical_considerations",
        "caveats",
    }
)
"""What ``edit_card`` may change; evaluation results are the version's metrics, not text."""

T = TypeVar("T")


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _same(value: Any) -> Any:
    return value


class _Field(Generic[T]):
    """A read-only attribute of a ``ModelVersion``, read from the API's JSON."""

    def __init__(self, convert: Callable[[Any], T]) -> None:
        self._convert = convert
        self._key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._key = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Field[T]: ...

    @overload
    def __get__(self, obj: ModelVersion, owner: type) -> T: ...

    def __get__(self, obj: ModelVersion | None, owner: type) -> T | _Field[T]:
        if obj is None:
            return self
        return self._convert(obj._data.get(self._key))

    def __set__(self, obj: ModelVersion, value: Any) -> None:
        raise AttributeError(f"{self._key} is read from the server; call refresh() instead")


class ModelVersion:
    """One registered version as last read from the server; ``refresh()`` reads it again.

    Read-only attributes, as the API returns them: ``group``, ``version``, ``status``
    (``PendingManualApproval``, ``Approved``, ``Rejected`` or ``Blocked``), ``flavor``,
    ``artifact_path``, ``artifact_version``, ``manifest_digest`` (what approval binds to),
    ``scan`` (``{"dangerous", "findings", "scanner", "scanned_files"}``), ``metrics``,
    ``description``, ``signature``, ``example``, lineage (``job_name``, ``run_id``,
    ``dataset_versions``), ``registered_by``, ``decided_by``, ``decided_at``,
    ``decision_comment`` and ``created_at``.

    Example::

        v = session.models("ml/churn").version("churn", 3)
        print(v.status, v.scan["dangerous"], v.metrics)
        v.approve("reviewed the card and the metrics")   # as a lead other than the registrant
    """

    group = _Field(str)
    version = _Field(int)
    status = _Field(str)
    flavor = _Field(str)
    artifact_path = _Field(str)
    artifact_version = _Field(int)
    manifest_digest = _Field(str)
    scan: _Field[dict[str, Any]] = _Field(lambda v: dict(v or {}))
    metrics: _Field[dict[str, float]] = _Field(lambda v: dict(v or {}))
    description = _Field(str)
    signature: _Field[dict[str, Any] | None] = _Field(_same)
    example: _Field[Any] = _Field(_same)
    job_name: _Field[str | None] = _Field(_same)
    run_id: _Field[str | None] = _Field(_same)
    dataset_versions: _Field[list[dict[str, Any]]] = _Field(lambda v: list(v or []))
    registered_by = _Field(str)
    decided_by: _Field[str | None] = _Field(_same)
    decided_at = _Field(_time)
    decision_comment: _Field[str] = _Field(lambda v: str(v or ""))
    created_at = _Field(_time)

    def __init__(self, registry: ModelRegistry, data: Mapping[str, Any]) -> None:
        self._registry = registry
        self._data: dict[str, Any] = dict(data)

    def __repr__(self) -> str:
        return f"<ModelVersion {self.group} v{self.version} {self.status}>"

    @property
    def entity(self) -> str:
        """The version's lineage name, ``model:GROUP:VERSION``."""
        return f"model:{self.group}:{self.version}"

    def as_dict(self) -> dict[str, Any]:
        """The version exactly as the API returned it (JSON types)."""
        return dict(self._data)

    def refresh(self) -> ModelVersion:
        """Read the version again; returns itself."""
        self._data = self._registry._version_data(self.group, self.version)
        return self

    def approve(self, comment: str = "") -> ModelVersion:
        """Approve it (see ``ModelRegistry.approve``); returns itself, updated."""
        self._data = self._registry._decide(self.group, self.version, "approve", comment)
        return self

    def reject(self, comment: str) -> ModelVersion:
        """Reject it, saying why (see ``ModelRegistry.reject``); returns itself, updated."""
        self._data = self._registry._decide(self.group, self.version, "reject", comment)
        return self

    def card(self, revision: int | None = None) -> dict[str, Any]:
        """Its model card (see ``ModelRegistry.card``)."""
        return self._registry.card(self.group, self.version, revision)

    def edit_card(self, **fields: Any) -> dict[str, Any]:
        """Edit its card while it is pending (see ``ModelRegistry.edit_card``)."""
        return self._registry.edit_card(self.group, self.version, **fields)

    def verify(self) -> dict[str, Any]:
        """Re-hash its stored files (see ``ModelRegistry.verify``)."""
        return self._registry.verify(self.group, self.version)

    def lineage(self) -> dict[str, Any]:
        """What it was made from (run, job, dataset versions) as a graph."""
        return self._registry._session.lineage(self._registry.project_ref, self.entity)

    def deploy(
        self,
        endpoint_name: str | None = None,
        *,
        instance_type: str = "cpu.small",
        initial_instance_count: int = 1,
        env: str = "dev",
        timeout: float = 900.0,
    ) -> Predictor:
        """Deploy this version to an endpoint of ``env`` and return its ``Predictor``.

        It runs a promotion (see ``Hosting.promote``): the bytes are verified, the endpoint
        (``<group>-<env>`` unless named) is created or updated to this version, the
        version's ``example`` is invoked, and a failure rolls back and raises
        ``DeploymentFailed``. ``staging`` and ``prod`` take only Approved versions, from an
        engineer, lead or admin; ``prod`` only after a Succeeded promotion to ``staging``.

        Example::

            v = session.models("ml/churn").version("churn", 23)
            predictor = v.deploy("customer-churn-v23", instance_type="cpu.small")
            predictor.predict({"features": [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]})
        """
        hosting = self._registry._session.hosting(self._registry.project_ref)
        run = hosting.promote(
            self.group,
            self.version,
            env,
            endpoint_name=endpoint_name,
            instance_type=instance_type,
            instance_count=initial_instance_count,
            timeout=timeout,
        )
        return hosting.predictor(run["endpoint_name"])


class ModelRegistry:
    """The model registry of one project; get it with ``session.models("team/project")``.

    Example::

        models = shipyard.Session().models("ml/churn")
        models.create_group("churn", description="who leaves next month")
        v = models.register("churn", artifact_path="models/churn.tar.gz", flavor="sklearn")
        print(v.version, v.status, v.scan["findings"])
    """

    def __init__(self, session: Session, project: str) -> None:
        self._session = session
        self.team, self.project = split_project(project)
        self._project_base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}"
        self._base = f"{self._project_base}/models"

    @property
    def project_ref(self) -> str:
        return f"{self.team}/{self.project}"

    def _url(self, group: str, number: int | None = None, action: str = "") -> str:
        url = f"{self._base}/{quote(group, safe='')}"
        if number is not None:
            url += f"/versions/{int(number)}"
        return url + (f"/{action}" if action else "")

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._session.request(method, url, **kwargs)

    def _text(self, url: str, params: Mapping[str, Any]) -> str:
        http = self._session.http
        with mapped_transport_errors(self._session.url):
            response = http.get(url, params={k: v for k, v in params.items() if v is not None})
        raise_for_error(response)
        return response.text

    # --- groups --------------------------------------------------------------------------

    def create_group(
        self, name: str, *, description: str = "", tags: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Create a model group; ``Conflict`` if the name is taken.

        Example::

            models.create_group("churn", description="monthly churn", tags={"team": "growth"})
        """
        body = {"name": name, "description": description, "tags": dict(tags or {})}
        result: dict[str, Any] = self._request("POST", self._base, json=body)
        return result

    def groups(self) -> builtins.list[dict[str, Any]]:
        """The project's model groups, by name, each with its ``last_version`` number."""
        result: builtins.list[dict[str, Any]] = self._request("GET", self._base)
        return result

    def group(self, name: str) -> dict[str, Any]:
        """One group (``NotFound`` if there is none)."""
        result: dict[str, Any] = self._request("GET", self._url(name))
        return result

    # --- versions ------------------------------------------------------------------------

    def register(
        self,
        group: str,
        *,
        job: str | None = None,
        run_id: str | None = None,
        artifact_path: str | None = None,
        artifact_version: int | None = None,
        flavor: str = "sklearn",
        signature: Mapping[str, Any] | None = None,
        example: Any = None,
        metrics: Mapping[str, float] | None = None,
        description: str = "",
        create_group: bool = False,
    ) -> ModelVersion:
        """Register the next version of ``group`` from exactly one source and return it.

        The sources: ``job`` (a completed training job: its model, run, metrics and input
        datasets), ``run_id`` with ``artifact_path`` (a file among the run's artifacts), or
        ``artifact_path`` alone (any artifact of the project; ``artifact_version`` pins one,
        default the latest). ``flavor`` is ``sklearn``, ``xgboost``, ``pytorch``, ``onnx``
        or ``custom``; ``metrics`` default to the source run's latest values. The version
        comes back ``PendingManualApproval``, or ``Blocked`` when the scan found something
        dangerous (``scan["findings"]`` says what). With ``create_group=True`` a missing
        group is created first. A job that has not completed is ``Conflict``.

        Example::

            v = models.register("churn", job="train-churn-1")
            v = models.register("churn", artifact_path="models/churn.tar.gz", flavor="sklearn")
            v = models.register("churn", run_id=run.id, artifact_path="model/model.pkl")
        """
        body: dict[str, Any] = {
            "job": job,
            "run_id": run_id,
            "artifact_path": artifact_path,
            "artifact_version": artifact_version,
            "flavor": flavor,
            "signature": dict(signature) if signature is not None else None,
            "example": example,
            "metrics": dict(metrics) if metrics is not None else None,
            "description": description,
        }
        body = {k: v for k, v in body.items() if v is not None}
        url = f"{self._url(group)}/versions"
        try:
            return ModelVersion(self, self._request("POST", url, json=body))
        except NotFound as missing:
            if not create_group or missing.field != "group":
                raise
        with contextlib.suppress(Conflict):  # someone else made it meanwhile: fine
            self.create_group(group)
        return ModelVersion(self, self._request("POST", url, json=body))

    def versions(self, group: str) -> builtins.list[ModelVersion]:
        """The group's versions, newest first."""
        found = self._request("GET", f"{self._url(group)}/versions")
        return [ModelVersion(self, data) for data in found]

    def _version_data(self, group: str, number: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", self._url(group, number))
        return result

    def version(self, group: str, number: int) -> ModelVersion:
        """One version (``NotFound`` if there is none, or it was deleted).

        Example::

            v = models.version("churn", 3)
            print(v.status, v.job_name, v.run_id, v.dataset_versions)
        """
        return ModelVersion(self, self._version_data(group, number))

    def _decide(self, group: str, number: int, verb: str, comment: str) -> dict[str, Any]:
        url = self._url(group, number, verb)
        result: dict[str, Any] = self._request("POST", url, json={"comment": comment})
        return result

    def approve(self, group: str, number: int, comment: str = "") -> ModelVersion:
        """Approve a pending version (leads and admins). Deciding on a version one
        registered oneself is ``PermissionDenied`` (the four-eyes rule, named in the
        message); a version already decided, or ``Blocked``, is ``Conflict``.

        Example::

            try:
                models.approve("churn", 3, "metrics and card reviewed")
            except shipyard.PermissionDenied as denied:
                print(denied)   # four-eyes rule: 'ana' registered churn v3 …
        """
        return ModelVersion(self, self._decide(group, number, "approve", comment))

    def reject(self, group: str, number: int, comment: str) -> ModelVersion:
        """Reject a pending version; ``comment`` says why and is required
        (``ValidationFailed`` on ``comment`` when blank). Same rules as ``approve``.

        Example::

            models.reject("churn", 4, "trained on last year's data")
        """
        return ModelVersion(self, self._decide(group, number, "reject", comment))

    def delete(self, group: str, number: int) -> None:
        """Delete a version; its number is never handed out again. Deleting an approved
        version takes a lead or admin (``PermissionDenied`` otherwise).

        Example::

            models.delete("churn", 2)
        """
        self._request("DELETE", self._url(group, number))

    def verify(self, group: str, number: int) -> dict[str, Any]:
        """Re-hash the stored files against the manifest the version was registered with:
        ``{"verified": True, "manifest_digest", "files"}``, or ``Conflict`` whose message
        (and ``details["files"]``) names every file that changed.

        Example::

            assert models.verify("churn", 3)["verified"]
        """
        result: dict[str, Any] = self._request("POST", self._url(group, number, "verify"))
        return result

    # --- model cards ---------------------------------------------------------------------

    def card(self, group: str, number: int, revision: int | None = None) -> dict[str, Any]:
        """The version's model card, the newest revision unless ``revision`` is given:
        ``intended_use``, ``risk_rating``, ``training_data``, ``evaluation_results`` (the
        version's metrics), ``evaluation_notes``, ``ethical_considerations``, ``caveats``,
        ``revision`` and ``frozen``.

        Example::

            card = models.card("churn", 3)
            print(card["revision"], card["risk_rating"], card["evaluation_results"])
        """
        params = {"revision": revision} if revision is not None else None
        result: dict[str, Any] = self._request(
            "GET", self._url(group, number, "card"), params=params
        )
        return result

    def edit_card(self, group: str, number: int, **fields: Any) -> dict[str, Any]:
        """Edit the card of a pending version; each edit is a new revision, returned.

        ``fields``: ``intended_use``, ``risk_rating`` (``unknown``, ``low``, ``medium``,
        ``high``), ``training_data``, ``evaluation_notes``, ``ethical_considerations``,
        ``caveats``; those left out keep their text. ``base_revision`` makes the edit
        ``Conflict`` if someone else edited since that revision. A decided version's card is
        frozen (``Conflict``).

        Example::

            models.edit_card(
                "churn", 3, intended_use="rank customers for retention calls", risk_rating="low"
            )
        """
        unknown = set(fields) - CARD_FIELDS
        if unknown:
            raise TypeError(
                f"edit_card() got unknown fields {sorted(unknown)}; "
                f"a card has {sorted(CARD_FIELDS)}"
            )
        body = {k: v for k, v in fields.items() if v is not None}
        result: dict[str, Any] = self._request("PATCH", self._url(group, number, "card"), json=body)
        return result

    def card_revisions(self, group: str, number: int) -> builtins.list[dict[str, Any]]:
        """Every revision of the card, oldest first."""
        url = self._url(group, number, "card/revisions")
        result: builtins.list[dict[str, Any]] = self._request("GET", url)
        return result

    def card_markdown(self, group: str, number: int, revision: int | None = None) -> str:
        """The card as one Markdown document (registry facts, metrics, then the text).

        Example::

            Path("churn-v3.md").write_text(models.card_markdown("churn", 3))
        """
        return self._text(self._url(group, number, "card.md"), {"revision": revision})

    def card_html(self, group: str, number: int, revision: int | None = None) -> str:
        """The card as a standalone HTML page (what the card's text says is shown, never run).

        Example::

            Path("churn-v3.html").write_text(models.card_html("churn", 3))
        """
        return self._text(self._url(group, number, "card.html"), {"revision": revision})

    # --- overview ------------------------------------------------------------------------

    def dashboard(self) -> builtins.list[dict[str, Any]]:
        """Every group with its newest versions, the latest approved number, how many wait
        for a decision, and each version's scan state.

        Example::

            for g in models.dashboard():
                print(g["name"], g["latest_approved"], g["pending"])
        """
        result: builtins.list[dict[str, Any]] = self._request(
            "GET", f"{self._project_base}/model-dashboard"
        )
        return result


def lineage(session: Session, project: str, entity: str) -> dict[str, Any]:
    """``GET …/lineage?entity=…`` for ``Session.lineage``."""
    team, name = split_project(project)
    url = f"/api/v1/projects/{quote(team)}/{quote(name)}/lineage"
    result: dict[str, Any] = session.request("GET", url, params={"entity": entity})
    return result

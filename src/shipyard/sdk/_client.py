"""``Session``: one connection to a Shipyard server, with its credentials."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from shipyard.kit.tls import client_ssl_context
from shipyard.sdk._artifacts import Artifacts, split_project
from shipyard.sdk._auth import BearerAuth
from shipyard.sdk._config import Profile, profile_name, resolve, save_profile
from shipyard.sdk._datasets import Datasets
from shipyard.sdk._events import Events, set_webhook_allowlist, webhook_allowlist
from shipyard.sdk._hosting import Hosting, Predictor
from shipyard.sdk._jobs import Jobs
from shipyard.sdk._models import ModelRegistry, lineage
from shipyard.sdk._monitoring import Monitoring
from shipyard.sdk._tracking import Tracking
from shipyard.sdk._transform import Transformer
from shipyard.sdk._transport import check, mapped_transport_errors

USER_AGENT = "shipyard-sdk"


class Session:
    """A client for one Shipyard server.

    With no arguments it reads ``SHIPYARD_URL`` and ``SHIPYARD_API_KEY``, else the profile
    that ``shipyard login`` wrote. Use it as a context manager (or call ``close()``) to release
    the connection pool.

    Example::

        import shipyard

        with shipyard.Session() as session:
            print(session.whoami()["username"])
            session.artifacts("ml/churn").put("data/marketing.csv", "marketing.csv")
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._profile_name = profile_name(profile)
        resolved = resolve(url, api_key, profile)
        # Only a saved password login carries a refresh token; its rotations are saved back.
        self._connect(resolved, timeout, transport, persist=bool(resolved.refresh_token))

    def _connect(
        self,
        profile: Profile,
        timeout: float,
        transport: httpx.BaseTransport | None,
        *,
        persist: bool,
    ) -> None:
        self.profile = profile
        self.url = profile.url.rstrip("/")
        self._auth = BearerAuth(profile, self._save_refreshed if persist else None)
        self.http = httpx.Client(
            base_url=self.url,
            auth=self._auth,
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            verify=client_ssl_context(),
        )

    @classmethod
    def login(cls, url: str, username: str, password: str, *, timeout: float = 60.0) -> Session:
        """Log in with a password; the session holds a 1-hour token it refreshes by itself."""
        with (
            mapped_transport_errors(url),
            httpx.Client(
                base_url=url.rstrip("/"), timeout=timeout, verify=client_ssl_context()
            ) as anon,
        ):
            pair = check(
                anon.post("/api/v1/auth/token", json={"username": username, "password": password})
            )
        return cls.from_profile(
            Profile(
                url=url,
                access_token=pair["access_token"],
                refresh_token=pair["refresh_token"],
                username=username,
            ),
            timeout=timeout,
        )

    @classmethod
    def from_profile(cls, profile: Profile, *, timeout: float = 60.0) -> Session:
        """A session for an explicit profile (not read from or saved to the profile file)."""
        session = cls.__new__(cls)
        session._profile_name = profile_name(None)
        session._connect(profile, timeout, None, persist=False)
        return session

    def _save_refreshed(self, profile: Profile) -> None:
        save_profile(profile, self._profile_name)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request to ``path`` (under the server URL); the JSON body or an APIError."""
        with mapped_transport_errors(self.url):
            response = self.http.request(method, path, **kwargs)
        return check(response)

    # --- who and what ------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The server's version and URLs (``api_url``, ``gateway_url``)."""
        result: dict[str, Any] = self.request("GET", "/api/v1/info")
        return result

    def whoami(self) -> dict[str, Any]:
        """The caller: ``username``, ``is_admin``, ``teams`` (team → role), ``key_id``."""
        result: dict[str, Any] = self.request("GET", "/api/v1/auth/whoami")
        return result

    # --- users, teams, projects, members -------------------------------------------------

    def create_user(self, username: str, password: str, *, admin: bool = False) -> dict[str, Any]:
        """Create a user (platform admins only)."""
        body = {"username": username, "password": password, "is_admin": admin}
        result: dict[str, Any] = self.request("POST", "/api/v1/users", json=body)
        return result

    def list_users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/users")
        return result

    def create_team(
        self,
        name: str,
        *,
        description: str = "",
        required_tags: Iterable[str] = (),
        tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a team; ``required_tags`` must then be present on every project it holds."""
        body = {
            "name": name,
            "description": description,
            "required_tags": list(required_tags),
            "tags": tags or {},
        }
        result: dict[str, Any] = self.request("POST", "/api/v1/teams", json=body)
        return result

    def get_team(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/v1/teams/{quote(name)}")
        return result

    def update_team(
        self,
        name: str,
        *,
        description: str | None = None,
        required_tags: Iterable[str] | None = None,
        quotas: Mapping[str, Any] | None = None,
        policies: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Change a team (its admins and leads); what is not given stays as it is.

        ``quotas`` and ``policies`` each replace the team's whole set: ``quotas`` takes
        ``max_instance_count`` (the most instances one job may ask for; ``{}`` lifts every
        quota), ``policies`` takes ``require_network_isolation`` (every job of the team must
        run network-isolated).

        Example::

            session.update_team(
                "ml",
                quotas={"max_instance_count": 4},
                policies={"require_network_isolation": True},
            )
        """
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        if required_tags is not None:
            body["required_tags"] = list(required_tags)
        if quotas is not None:
            body["quotas"] = dict(quotas)
        if policies is not None:
            body["policies"] = dict(policies)
        result: dict[str, Any] = self.request("PATCH", f"/api/v1/teams/{quote(name)}", json=body)
        return result

    def list_teams(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/teams")
        return result

    def create_project(
        self, project: str, *, description: str = "", tags: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Create ``"team/project"``; the team's required tag keys must be in ``tags``."""
        team, name = split_project(project)
        body = {"name": name, "description": description, "tags": tags or {}}
        result: dict[str, Any] = self.request(
            "POST", f"/api/v1/teams/{quote(team)}/projects", json=body
        )
        return result

    def get_project(self, project: str) -> dict[str, Any]:
        """Show ``"team/project"`` with its tags."""
        team, name = split_project(project)
        result: dict[str, Any] = self.request(
            "GET", f"/api/v1/projects/{quote(team)}/{quote(name)}"
        )
        return result

    def list_projects(self, team: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", f"/api/v1/teams/{quote(team)}/projects")
        return result

    def add_member(self, team: str, username: str, role: str) -> dict[str, Any]:
        """Add ``username`` to ``team`` with ``role`` (or change their role)."""
        body = {"username": username, "role": role}
        result: dict[str, Any] = self.request(
            "POST", f"/api/v1/teams/{quote(team)}/members", json=body
        )
        return result

    def list_members(self, team: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", f"/api/v1/teams/{quote(team)}/members")
        return result

    def remove_member(self, team: str, username: str) -> None:
        self.request("DELETE", f"/api/v1/teams/{quote(team)}/members/{quote(username)}")

    # --- API keys ------------------------------------------------------------------------

    def create_key(
        self,
        *,
        role: str,
        team: str | None = None,
        project: str | None = None,
        name: str = "",
        expires_in_days: int | None = None,
    ) -> dict[str, Any]:
        """Create an API key scoped to a team or a project; ``api_key`` is shown only now."""
        body: dict[str, Any] = {"role": role, "name": name}
        if team is not None:
            body["team"] = team
        if project is not None:
            body["project"] = project
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        result: dict[str, Any] = self.request("POST", "/api/v1/keys", json=body)
        return result

    def list_keys(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/keys")
        return result

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/api/v1/keys/{quote(key_id)}")
        return result

    # --- audit and administration --------------------------------------------------------

    def audit_tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The newest ``n`` audit entries the caller may read."""
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/audit", params={"n": n})
        return result

    def audit_verify(self) -> dict[str, Any]:
        """Check the audit hash chain and signed digests: ``ok``, ``first_bad_seq``, ``reason``."""
        result: dict[str, Any] = self.request("GET", "/api/v1/audit/verify")
        return result

    def rotate_master_key(self) -> dict[str, Any]:
        """Re-wrap every data key under a new master key (platform admins only)."""
        result: dict[str, Any] = self.request("POST", "/api/v1/admin/master-key/rotate")
        return result

    def webhook_allowlist(self) -> list[str]:
        """The hosts and ranges webhooks may target though not public (platform admins only)."""
        return webhook_allowlist(self)

    def set_webhook_allowlist(self, entries: str | Iterable[str]) -> list[str]:
        """Replace the webhook allow-list (platform admins only) and return it as stored.

        Entries are exact host names (no wildcards; ``localhost`` opens only itself) or IP
        addresses and CIDR ranges, which open their addresses however a URL spells them. An
        empty list closes everything non-public again; a bad entry is ``ValidationFailed``
        on ``entries.<index>``.

        Example::

            current = session.webhook_allowlist()
            session.set_webhook_allowlist([*current, "10.20.0.0/16", "hooks.internal"])
        """
        return set_webhook_allowlist(self, entries)

    # --- artifacts -----------------------------------------------------------------------

    def artifacts(self, project: str) -> Artifacts:
        """The artifact store of ``"team/project"``."""
        return Artifacts(self, project)

    # tracking and datasets --------------------------------------------------------------

    def tracking(self, project: str) -> Tracking:
        """Experiments, runs and metrics of ``"team/project"``."""
        return Tracking(self, project)

    def datasets(self, project: str) -> Datasets:
        """The versioned, profiled datasets of ``"team/project"``."""
        return Datasets(self, project)

    # jobs -------------------------------------------------------------------------------

    def jobs(self, project: str) -> Jobs:
        """The training and processing jobs of ``"team/project"``."""
        return Jobs(self, project)

    # events and webhooks ---------------------------------------------------------------

    def events(self, project: str) -> Events:
        """The event log and webhooks of ``"team/project"``.

        Example::

            events = session.events("ml/churn")
            hook = events.create_webhook("https://hooks.example.com/shipyard")
            events.ping(hook["id"])
            print([e["type"] for e in events.list(limit=10)])
        """
        return Events(self, project)

    # models and lineage -----------------------------------------------------------------

    def models(self, project: str) -> ModelRegistry:
        """The model registry of ``"team/project"``: groups, versions, approval, cards.

        Example::

            models = session.models("ml/churn")
            v = models.register("churn", job="train-churn-1", create_group=True)
            print(v.version, v.status)
        """
        return ModelRegistry(self, project)

    # hosting ----------------------------------------------------------------------------

    def hosting(self, project: str) -> Hosting:
        """Deployable models, endpoint configs, endpoints and promotions of
        ``"team/project"``; ``predictor(name)`` invokes an endpoint through the gateway.

        Example::

            hosting = session.hosting("ml/churn")
            hosting.promote("churn", 23, "staging")
            print(hosting.predictor("churn-staging").predict({"features": [25, 2, 0.0]}))
        """
        return Hosting(self, project)

    def monitoring(self, project: str) -> Monitoring:
        """Baselines, monitors (``ModelMonitor``) and ground truth of ``"team/project"``."""
        return Monitoring(self, project)

    def transformer(self, project: str) -> Transformer:
        """Batch transforms of ``"team/project"``: a registry version over a whole dataset."""
        return Transformer(self, project)

    def predictor(self, endpoint_name: str) -> Predictor:
        """Invoke an endpoint by name (names are unique on the platform), through the
        gateway with this session's credentials."""
        return Predictor(self, endpoint_name)

    def lineage(self, project: str, entity: str) -> dict[str, Any]:
        """Everything ``entity`` was made from and everything made from it, as a graph.

        ``entity`` is ``dataset:NAME:VERSION``, ``job:NAME``, ``run:RUN_ID`` or
        ``model:GROUP:VERSION``. The answer: ``root``; ``nodes``, each ``{"id", "kind",
        "label", "attributes"}`` (status, created_at…); ``edges``, each ``{"source",
        "target", "relation"}`` from the older entity to the newer (``input``, ``tracked
        as``, ``registered as``, ``produced``); ``truncated`` when the walk stopped at its
        node limit. A malformed entity is ``ValidationFailed`` (field ``entity``), an
        unknown one ``NotFound``.

        Example::

            graph = session.lineage("ml/churn", "model:churn:3")
            for edge in graph["edges"]:
                print(edge["source"], f"--{edge['relation']}->", edge["target"])
        """
        return lineage(self, project, entity)

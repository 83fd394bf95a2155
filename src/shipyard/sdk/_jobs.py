"""Training and processing jobs: the ``Jobs`` client, ``Job``, ``Estimator`` and ``Processor``.

A job runs a script written for SageMaker (``SM_MODEL_DIR``, ``SM_CHANNEL_<NAME>``,
``SM_HPS``, checkpoints in ``SM_CHECKPOINT_DIR``, ``RANK``/``WORLD_SIZE`` for
``torch.distributed``) on one or more instances of the platform. ``Estimator.fit`` does what a
user of ``sagemaker.estimator.Estimator`` expects: packs the source directory, uploads it,
submits the job, streams its logs until it ends and raises ``JobFailed`` if it did not
complete. ``session.jobs("team/project")`` is the lower-level client for jobs submitted
elsewhere (the CLI, another notebook).

Following logs survives the quiet starts and long silences of a job: the server's stream is
re-opened when it ends before the job does (a Pending job has no log yet) or when nothing
arrives for a while, and lines already shown are skipped, so each line is seen once.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from shipyard.sdk._artifacts import Artifacts, split_project
from shipyard.sdk._exceptions import ConfigurationError, Conflict, JobFailed, NotFound
from shipyard.sdk._models import ModelRegistry, ModelVersion
from shipyard.sdk._transport import mapped_transport_errors, raise_for_error

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
"""A job in one of these statuses never changes again."""
FAILED_STATUSES = frozenset({"Failed", "Stopped"})
"""Waiting on a job that ends in one of these raises ``JobFailed``."""
MAX_SOURCE_BYTES = 512 * 1024 * 1024
"""The largest packed source the server takes (the tar.gz, not the directory)."""
SOURCE_PREFIX = "jobs-src"
EXCLUDED_NAMES = frozenset({".git", "__pycache__", ".venv"})
EXCLUDED_SUFFIXES = (".pyc",)
JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Following a log: how long a silent stream stays open before it is re-opened (the server
# sends nothing while a job prints nothing), and the pause before re-opening an ended one.
FOLLOW_READ_TIMEOUT_S = 30.0
FOLLOW_RETRY_S = 0.5
_INSTANCE_PREFIX = re.compile(r"^\[(algo-\d+)\] ")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Job:
    """A job as last read from the server; ``refresh()`` reads it again.

    Attributes mirror the API: ``name``, ``kind``, ``status`` (Pending, Starting, Downloading,
    Running, Uploading, Completed, Failed, Stopping, Stopped, Interrupted, Resuming),
    ``reason`` (why it failed or stopped, with the last log lines), ``attempt``, ``retries``,
    ``run_id`` (the tracking run of the job), ``model_artifact`` (``"path@version"`` of
    model.tar.gz, training jobs), ``output_artifacts``, ``spec``, ``phase_times``.

    Example::

        job = session.jobs("ml/churn").get("train-20250101-120000-000")
        job.wait(logs=True)
        print(job.status, job.model_artifact)
    """

    def __init__(self, jobs: Jobs, data: Mapping[str, Any]) -> None:
        self._jobs = jobs
        self._update(data)

    def _update(self, data: Mapping[str, Any]) -> None:
        self.data: dict[str, Any] = dict(data)
        self.name: str = data["name"]
        self.kind: str = data["kind"]
        self.status: str = data["status"]
        self.reason: str = data.get("reason") or ""
        self.spec: dict[str, Any] = dict(data.get("spec") or {})
        self.attempt: int = int(data.get("attempt", 1))
        self.retries: int = int(data.get("retries", 0))
        self.run_id: str | None = data.get("run_id")
        self.model_artifact: str | None = data.get("model_artifact")
        self.output_artifacts: dict[str, Any] = dict(data.get("output_artifacts") or {})
        self.created_by: str = data.get("created_by", "")
        self.created_at: datetime = _time(str(data["created_at"]))
        self.phase_times: dict[str, datetime] = {
            phase: _time(str(at)) for phase, at in (data.get("phase_times") or {}).items()
        }

    def __repr__(self) -> str:
        return f"<Job {self.name} {self.status}>"

    @property
    def project(self) -> str:
        return self._jobs.project_ref

    @property
    def terminal(self) -> bool:
        """True once the job is Completed, Failed or Stopped."""
        return self.status in TERMINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """The job exactly as the API returned it (JSON types)."""
        return dict(self.data)

    def refresh(self) -> Job:
        """Read the job again; returns itself."""
        self._update(self._jobs._get_data(self.name))
        return self

    def logs(self, *, follow: bool = False, instance: str | None = None) -> Iterator[str]:
        """The job's log lines; see ``Jobs.logs``."""
        return self._jobs.logs(self.name, follow=follow, instance=instance)

    def stop(self) -> Job:
        """Ask the platform to stop the job (SIGTERM, a grace period, SIGKILL); it ends Stopped."""
        self._update(self._jobs._post(self.name, "stop"))
        return self

    def interrupt(self) -> Job:
        """Kill the instances like a spot reclaim; the job resumes from its last checkpoint."""
        self._update(self._jobs._post(self.name, "interrupt"))
        return self

    def register(self, group: str, **options: Any) -> ModelVersion:
        """Register this (completed training) job's model as the next version of ``group``,
        creating the group if it does not exist yet, and return the version.

        The version carries the job's run, its latest metrics and the dataset versions it
        read. ``options`` are those of ``ModelRegistry.register`` (``flavor``,
        ``signature``, ``example``, ``metrics``, ``description``). A job that has not
        completed is ``Conflict``.

        Example::

            job = estimator.fit({"train": "dataset:marketing:1"})
            version = job.register(group="churn", flavor="sklearn")
            print(version.version, version.status)     # 1 PendingManualApproval
        """
        registry = ModelRegistry(self._jobs._session, self.project)
        return registry.register(group, job=self.name, create_group=True, **options)

    def wait(
        self,
        *,
        logs: bool = False,
        poll: float = 1.0,
        progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Block until the job ends; see ``Jobs.wait``. Returns itself, updated."""
        try:
            done = self._jobs.wait(self.name, logs=logs, poll=poll, progress=progress)
        except JobFailed as failed:
            self._update(failed.job.data)
            failed.job = self
            raise
        self._update(done.data)
        return self


class Jobs:
    """The jobs of one project; get it with ``session.jobs("team/project")``.

    Example::

        jobs = shipyard.Session().jobs("ml/churn")
        job = jobs.submit(name="nightly", entry_point="train.py", source="src/train.tar.gz")
        for line in jobs.logs("nightly", follow=True):
            print(line)
        print(jobs.get("nightly").status)
    """

    def __init__(self, session: Session, project: str) -> None:
        self._session = session
        self.team, self.project = split_project(project)
        self._base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}/jobs"

    @property
    def project_ref(self) -> str:
        return f"{self.team}/{self.project}"

    def _url(self, name: str, action: str = "") -> str:
        return f"{self._base}/{quote(name, safe='')}" + (f"/{action}" if action else "")

    def _get_data(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._session.request("GET", self._url(name))
        return result

    def _post(self, name: str, action: str) -> dict[str, Any]:
        result: dict[str, Any] = self._session.request("POST", self._url(name, action))
        return result

    def submit(self, **spec: Any) -> Job:
        """Submit a job; the keyword arguments are the API's job spec.

        ``name`` and ``entry_point`` are required; ``source`` is the artifact path of a
        tar.gz of the code (``Estimator`` packs and uploads it for you). The others:
        ``kind`` (training | processing), ``requirements``, ``arguments``,
        ``hyperparameters``, ``inputs`` (channel → ``"dataset:NAME:VERSION"`` or
        ``"path[@version]"``), ``output_path``, ``checkpointing``, ``instance_type``,
        ``instance_count``, ``max_runtime_s``, ``max_retries``, ``spot``,
        ``network_isolation``, ``metric_definitions`` (``[{"name", "regex"}]``),
        ``environment``, ``tags``. A bad spec is ``ValidationFailed`` naming the field; a
        quota or policy refusal is ``PermissionDenied``; a taken name is ``Conflict``.

        Example::

            jobs.submit(
                name="churn-1",
                entry_point="train.py",
                source="jobs-src/churn-1/source.tar.gz",
                inputs={"train": "dataset:marketing:3"},
                hyperparameters={"epochs": 5},
            )
        """
        body = {k: v for k, v in spec.items() if v is not None}
        return Job(self, self._session.request("POST", self._base, json=body))

    def get(self, name: str) -> Job:
        """One job by name (``NotFound`` if there is none)."""
        return Job(self, self._get_data(name))

    def list(self, status: str | None = None, *, limit: int = 100) -> builtins.list[Job]:
        """The project's jobs, newest first; only those in ``status`` if given.

        Example::

            running = jobs.list(status="Running")
        """
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        found = self._session.request("GET", self._base, params=params)
        return [Job(self, data) for data in found]

    def stop(self, name: str) -> Job:
        """Stop a job: SIGTERM to every instance, a grace period, then SIGKILL; ends Stopped.

        ``Conflict`` if it has already ended.
        """
        return Job(self, self._post(name, "stop"))

    def interrupt(self, name: str) -> Job:
        """Kill a running job's instances like a spot reclaim; it resumes from its last
        checkpoint in a new attempt (``Conflict`` unless it holds instances)."""
        return Job(self, self._post(name, "interrupt"))

    def logs(
        self, name: str, *, follow: bool = False, instance: str | None = None
    ) -> Iterator[str]:
        """The job's log lines (stdout and stderr of its instances), streamed as they arrive.

        A job with several instances prefixes each line with its instance (``[algo-2] ``);
        ``instance="algo-2"`` keeps only that one's. With ``follow=True`` the iterator ends
        when the job ends, having shown every line once, and waits through a Pending job.

        Example::

            for line in jobs.logs("churn-1", follow=True):
                print(line)
        """
        if not follow:
            yield from self._log_pass(name, instance, follow=False)
            return
        seen: Counter[str] = Counter()
        while True:
            yield from _unseen(self._log_pass(name, instance, follow=True), seen)
            if self.get(name).terminal:
                # Whatever the last stream missed (e.g. it ended while the job was Pending
                # and the job then ran to the end before this look).
                yield from _unseen(self._log_pass(name, instance, follow=False), seen)
                return
            time.sleep(FOLLOW_RETRY_S)

    def _log_pass(self, name: str, instance: str | None, *, follow: bool) -> Iterator[str]:
        """One request for the log; a followed stream that goes silent or breaks just ends."""
        params: dict[str, Any] = {"follow": "true" if follow else "false"}
        if instance is not None:
            params["instance"] = instance
        timeout = httpx.Timeout(60.0, connect=10.0, read=FOLLOW_READ_TIMEOUT_S if follow else 60.0)
        http = self._session.http
        with (
            mapped_transport_errors(self._session.url),
            http.stream("GET", self._url(name, "logs"), params=params, timeout=timeout) as r,
        ):
            raise_for_error(r)
            try:
                yield from r.iter_lines()
            except (httpx.ReadTimeout, httpx.RemoteProtocolError):
                if not follow:
                    raise

    def wait(
        self,
        name: str,
        *,
        logs: bool = False,
        poll: float = 1.0,
        progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Block until the job ends and return it; raise ``JobFailed`` if it ended Failed or
        Stopped (the exception carries the job and its ``reason``).

        With ``logs=True`` the job's log lines are printed to stdout as they arrive;
        otherwise the job is read every ``poll`` seconds and ``progress(job)``, if given,
        is called each time (e.g. to show its status).

        Example::

            try:
                job = jobs.wait("churn-1", logs=True)
            except shipyard.JobFailed as failed:
                print(failed.reason)
        """
        if logs:
            for line in self.logs(name, follow=True):
                print(line, flush=True)
            job = self.get(name)
        else:
            while True:
                job = self.get(name)
                if progress is not None:
                    progress(job)
                if job.terminal:
                    break
                time.sleep(poll)
        if job.status in FAILED_STATUSES:
            raise JobFailed(job)
        return job


def _unseen(lines: Iterable[str], seen: Counter[str]) -> Iterator[str]:
    """Skip the lines a previous pass over the same log already gave; count the rest.

    A re-opened stream starts from the beginning of the log, and with several instances their
    lines may interleave differently, so lines are counted per instance: within one instance
    the order never changes.
    """
    skip = Counter(seen)
    for line in lines:
        found = _INSTANCE_PREFIX.match(line)
        key = found.group(1) if found else ""
        if skip[key] > 0:
            skip[key] -= 1
            continue
        seen[key] += 1
        yield line


# --- packing a source directory --------------------------------------------------------------


def default_job_name(base: str, now: datetime | None = None) -> str:
    """``<base>-<yyyymmdd-hhmmss-mmm>`` (UTC), lowercased and cut to a valid job name.

    Example::

        >>> default_job_name("Train_v2", datetime(2025, 3, 1, 12, 0, 5, 123000))
        'train-v2-20250301-120005-123'
    """
    now = now or datetime.now(UTC)
    stamp = f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"
    clean = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-") or "job"
    return f"{clean[: 62 - len(stamp)].rstrip('-')}-{stamp}"


def _entry_stem(entry_point: str) -> str:
    return PurePosixPath(entry_point).stem if entry_point.endswith(".py") else entry_point


def source_files(source_dir: Path) -> Iterator[Path]:
    """Every file to pack, sorted: ``.git``, ``__pycache__``, ``.venv`` and ``*.pyc`` left out."""
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_NAMES)
        for name in sorted(files):
            path = Path(root, name)
            if name.endswith(EXCLUDED_SUFFIXES) or not path.is_file():
                continue
            yield path


class _Capped:
    """A write-only file that refuses to grow past ``limit`` bytes, so an oversized source
    fails while it is being packed rather than after a long upload."""

    def __init__(self, raw: IO[bytes], limit: int, source_dir: Path) -> None:
        self._raw = raw
        self._limit = limit
        self._source_dir = source_dir
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self._limit:
            raise ValueError(
                f"the packed source_dir {str(self._source_dir)!r} is over "
                f"{self._limit // (1024 * 1024)} MiB; keep data and large files out of it "
                "and pass them as inputs (datasets or artifacts) instead"
            )
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


@contextlib.contextmanager
def packed_source(source_dir: Path, *, limit: int = MAX_SOURCE_BYTES) -> Iterator[Path]:
    """A temporary tar.gz of ``source_dir`` (paths relative to it), deleted afterwards."""
    fd, name = tempfile.mkstemp(prefix="shipyard-source-", suffix=".tar.gz")
    try:
        with os.fdopen(fd, "wb") as raw:
            capped = _Capped(raw, limit, source_dir)
            with tarfile.open(fileobj=capped, mode="w:gz", dereference=True) as tar:  # type: ignore[call-overload]
                for path in source_files(source_dir):
                    tar.add(path, arcname=path.relative_to(source_dir).as_posix())
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


# --- Estimator and Processor -----------------------------------------------------------------


class _Launcher:
    """What ``Estimator`` and ``Processor`` share: a spec, a source directory, a project."""

    kind = "training"

    def __init__(
        self,
        entry_point: str,
        source_dir: str | os.PathLike[str] = ".",
        *,
        instance_type: str = "cpu.small",
        instance_count: int = 1,
        requirements: str | None = None,
        spot: bool = False,
        max_runtime_s: int = 24 * 3600,
        max_retries: int = 0,
        network_isolation: bool = False,
        environment: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        output_path: str | None = None,
        arguments: Sequence[str] | None = None,
        project: str | None = None,
        session: Session | None = None,
        base_job_name: str | None = None,
    ) -> None:
        self.entry_point = entry_point
        self.source_dir = Path(source_dir)
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.requirements = requirements
        self.spot = spot
        self.max_runtime_s = max_runtime_s
        self.max_retries = max_retries
        self.network_isolation = network_isolation
        self.environment = dict(environment or {})
        self.tags = dict(tags or {})
        self.output_path = output_path
        self.arguments = list(arguments or [])
        self.project = project or os.environ.get("SHIPYARD_PROJECT") or ""
        if not self.project:
            raise ConfigurationError(
                "no project to run the job in: pass project='team/project' or set SHIPYARD_PROJECT"
            )
        split_project(self.project)
        self._session = session
        self.base_job_name = base_job_name
        self.latest_job: Job | None = None
        """The job the last ``fit``/``run`` submitted."""

    @property
    def session(self) -> Session:
        if self._session is None:
            from shipyard.sdk._tracking import _default_session

            self._session = _default_session()
        return self._session

    def _spec(self) -> dict[str, Any]:
        """The spec fields of this launcher; ``Estimator`` adds its own."""
        return {
            "kind": self.kind,
            "entry_point": self.entry_point,
            "requirements": self.requirements,
            "arguments": self.arguments,
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
            "max_runtime_s": self.max_runtime_s,
            "max_retries": self.max_retries,
            "spot": self.spot,
            "network_isolation": self.network_isolation,
            "environment": self.environment,
            "tags": self.tags,
            "output_path": self.output_path,
        }

    def _check_source_dir(self) -> None:
        """Refuse, before anything is uploaded, what the server would refuse after."""
        where = self.source_dir
        if not where.is_dir():
            raise FileNotFoundError(f"source_dir {str(where)!r} is not a directory")
        ep = self.entry_point
        if ep.endswith(".py"):
            candidates = [ep]
        else:
            module = ep.replace(".", "/")
            candidates = [f"{module}.py", f"{module}/__main__.py"]
        if not any((where / c).is_file() for c in candidates):
            raise FileNotFoundError(
                f"entry point {ep!r} is not in source_dir {str(where)!r} "
                f"(looked for {' or '.join(candidates)})"
            )
        if self.requirements is not None and not (where / self.requirements).is_file():
            raise FileNotFoundError(
                f"requirements file {self.requirements!r} is not in source_dir {str(where)!r}"
            )

    def _launch(
        self,
        inputs: Mapping[str, str] | str | None,
        *,
        wait: bool,
        logs: bool,
        job_name: str | None,
        extra: Mapping[str, Any],
    ) -> Job:
        name = job_name or default_job_name(self.base_job_name or _entry_stem(self.entry_point))
        if not JOB_NAME.match(name):
            raise ValueError(
                f"job name {name!r} must be 1-63 lowercase letters, digits or '-', starting "
                "with a letter or digit"
            )
        self._check_source_dir()
        jobs = self.session.jobs(self.project)
        with contextlib.suppress(NotFound):
            jobs.get(name)  # uploading first would replace the source of the existing job
            raise Conflict(409, "conflict", f"job {name!r} already exists", field="name")
        source = f"{SOURCE_PREFIX}/{name}/source.tar.gz"
        with packed_source(self.source_dir, limit=MAX_SOURCE_BYTES) as archive:
            Artifacts(self.session, self.project).put(
                source, archive, content_type="application/gzip"
            )
        channels = {"training": inputs} if isinstance(inputs, str) else dict(inputs or {})
        spec = {**self._spec(), **extra, "name": name, "source": source, "inputs": channels}
        job = jobs.submit(**spec)
        self.latest_job = job
        if wait:
            job.wait(logs=logs)
        return job


class Estimator(_Launcher):
    """A training job from a local source directory, like SageMaker's ``Estimator``.

    ``fit()`` packs ``source_dir`` into a tar.gz (without ``.git``, ``__pycache__``, ``.venv``
    and ``*.pyc``; at most 512 MiB packed), uploads it to
    ``jobs-src/<job name>/source.tar.gz`` in the project's artifact store, submits the job and,
    with ``wait=True``, prints its logs until it ends. The job runs ``entry_point`` with the
    SageMaker runtime contract. ``project`` defaults to ``$SHIPYARD_PROJECT`` and ``session``
    to the one ``Session()`` makes from the environment or the login profile.

    ``requirements`` names a requirements file inside ``source_dir``: the job then runs in a
    virtual environment built from it (cached, so the next job with the same file starts at
    once); without it the job uses the platform's own Python packages.

    Example::

        import shipyard

        estimator = shipyard.Estimator(
            entry_point="train.py",
            source_dir="churn",
            instance_count=2,
            hyperparameters={"epochs": 10, "lr": 0.05},
            metric_definitions=[{"name": "auc", "regex": "auc=([0-9.]+)"}],
            checkpointing=True,
            project="ml/churn",
        )
        job = estimator.fit({"train": "dataset:marketing:3"})
        print(job.model_artifact)          # jobs/train-20250301-120005-123/model.tar.gz@1
    """

    kind = "training"

    def __init__(
        self,
        entry_point: str = "train.py",
        source_dir: str | os.PathLike[str] = ".",
        *,
        instance_type: str = "cpu.small",
        instance_count: int = 1,
        hyperparameters: Mapping[str, str | int | float | bool] | None = None,
        requirements: str | None = None,
        spot: bool = False,
        checkpointing: bool = False,
        metric_definitions: Sequence[Mapping[str, str]] | None = None,
        max_runtime_s: int = 24 * 3600,
        max_retries: int = 0,
        network_isolation: bool = False,
        environment: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        output_path: str | None = None,
        arguments: Sequence[str] | None = None,
        project: str | None = None,
        session: Session | None = None,
        base_job_name: str | None = None,
    ) -> None:
        super().__init__(
            entry_point,
            source_dir,
            instance_type=instance_type,
            instance_count=instance_count,
            requirements=requirements,
            spot=spot,
            max_runtime_s=max_runtime_s,
            max_retries=max_retries,
            network_isolation=network_isolation,
            environment=environment,
            tags=tags,
            output_path=output_path,
            arguments=arguments,
            project=project,
            session=session,
            base_job_name=base_job_name,
        )
        self.hyperparameters = dict(hyperparameters or {})
        self.checkpointing = checkpointing
        self.metric_definitions = [dict(d) for d in metric_definitions or []]

    def fit(
        self,
        inputs: Mapping[str, str] | str | None = None,
        *,
        wait: bool = True,
        logs: bool = True,
        job_name: str | None = None,
    ) -> Job:
        """Run the training job and return it (Completed when ``wait``, else as submitted).

        ``inputs`` maps channel names to ``"dataset:NAME:VERSION"`` or an artifact
        ``"path[@version]"``; the script finds channel ``train`` in ``SM_CHANNEL_TRAIN``. A
        single string is the channel ``training``. ``job_name`` defaults to
        ``<base_job_name or entry point>-<yyyymmdd-hhmmss-mmm>``. Raises ``JobFailed`` if the
        job ends Failed or Stopped while waited on; ``FileNotFoundError`` (nothing uploaded)
        if the entry point or the requirements file is not in ``source_dir``.

        Example::

            job = estimator.fit({"train": "dataset:marketing:3"}, wait=False)
            job.wait(logs=True)
        """
        extra = {
            "hyperparameters": self.hyperparameters,
            "checkpointing": self.checkpointing,
            "metric_definitions": self.metric_definitions,
        }
        return self._launch(inputs, wait=wait, logs=logs, job_name=job_name, extra=extra)


class Processor(_Launcher):
    """A processing job from a local source directory, like SageMaker's ``ScriptProcessor``.

    The same packing, upload and waiting as ``Estimator``; the job gets no model directory
    to fill: files written to ``SM_OUTPUT_DATA_DIR`` are stored under
    ``jobs/<job name>/output/`` (or ``output_path``) and listed in the job's
    ``output_artifacts``.

    Example::

        processor = shipyard.Processor(
            entry_point="clean.py", source_dir="churn", project="ml/churn"
        )
        job = processor.run(inputs={"raw": "data/marketing.csv"}, arguments=["--drop-na"])
        print(job.output_artifacts["output"])
    """

    kind = "processing"

    def run(
        self,
        inputs: Mapping[str, str] | str | None = None,
        *,
        arguments: Sequence[str] | None = None,
        wait: bool = True,
        logs: bool = True,
        job_name: str | None = None,
    ) -> Job:
        """Run the processing job and return it; ``arguments`` replace the constructor's.

        Raises like ``Estimator.fit``.

        Example::

            job = processor.run({"raw": "dataset:marketing:3"}, wait=False)
        """
        extra = {} if arguments is None else {"arguments": list(arguments)}
        return self._launch(inputs, wait=wait, logs=logs, job_name=job_name, extra=extra)

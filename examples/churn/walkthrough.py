"""The churn walk-through, end to end, against a running Shipyard (``make up``).

What a team does with the platform, in order, each step checked:

 1. the platform admin makes a team and a project, a data scientist (ana) and a lead (lee);
 2. ana uploads ``marketing.csv`` (10 features, a ``churn`` label) as a dataset version;
 3. ana trains with ``Estimator(...).fit()`` on 2 spot instances with checkpointing; the job
    is interrupted once, like a spot reclaim, and resumes from its last checkpoint;
 4. ana registers the model; 5. lee approves it (the four-eyes rule: not its registrant);
 6. ana promotes it to dev as endpoint ``customer-churn-v23``, with data capture on;
 7. an application invokes it with an invoker key and gets ``{"prediction", "model_version"}``;
 8. ana profiles the training data as a baseline and puts a drift monitor on the endpoint, with
    a retraining job as its action; lee subscribes a webhook (the team's chat) to its alerts;
 9. the application's traffic drifts; the monitor sees it, the alert is delivered and the
    retraining job starts — and its model comes back as a new version, pending approval.

Every name it makes carries a run suffix, so it runs on any server, any number of times (the
endpoint name is platform-wide: a ``customer-churn-v23`` left by an earlier run is deleted).
It exits 1 at the first step whose expectation fails, saying which and why.

Usage (with ``make up`` running in another terminal)::

    python examples/churn/walkthrough.py                       # ~/.shipyard/admin-credentials.json
    python examples/churn/walkthrough.py --credentials /tmp/shipyard/admin-credentials.json
    SHIPYARD_URL=http://127.0.0.1:9000 python examples/churn/walkthrough.py

The webhook receiver listens on 127.0.0.9 (Linux routes all of 127/8 to loopback; elsewhere
pass ``--receiver-host 127.0.0.1``), which the walk-through adds to the platform's webhook
allow-list.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

import shipyard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate_data  # noqa: E402  (this folder's modules, next to this script)
from receiver import Receiver  # noqa: E402

ENDPOINT = "customer-churn-v23"
LABEL = "v23"
GROUP = "churn"
DATASET = "marketing"
MONITOR = "churn-drift"
EXAMPLE = {"features": generate_data.EXAMPLE}
METRICS = [
    {"name": "auc", "regex": r"auc=([0-9.]+)"},
    {"name": "loss", "regex": r"loss=([0-9.]+)"},
]
SIGNATURE = {
    "inputs": [
        {"name": name, "type": "double" if name == "spend_30d" else "long"}
        for name in generate_data.FEATURES
    ],
    "outputs": [{"name": "churn_probability", "type": "double"}],
}
T = TypeVar("T")


class WalkthroughFailed(Exception):
    """A step's expectation did not hold; the message says what was expected and seen."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise WalkthroughFailed(message)


def say(text: str) -> None:
    print(f"   {text}", flush=True)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``probe`` until it returns something; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None and found is not False:
            return found
        time.sleep(every)
    raise WalkthroughFailed(f"timed out after {timeout:g}s waiting for {what}")


@dataclass
class Steps:
    """Numbers and times the steps as they run, and prints a summary at the end."""

    started: float = field(default_factory=time.monotonic)
    times: list[tuple[str, float]] = field(default_factory=list)
    current: str = ""

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        number = len(self.times) + 1
        self.current = f"{number}. {title}"
        print(f"\n== {self.current}", flush=True)
        began = time.monotonic()
        yield
        self.times.append((title, time.monotonic() - began))
        say(f"ok ({time.monotonic() - began:.1f}s)")

    def summary(self) -> None:
        total = time.monotonic() - self.started
        print(f"\nThe churn walk-through passed: {len(self.times)} steps in {total:.1f}s")


# --- the walk-through ----------------------------------------------------------------------


@dataclass
class Walkthrough:
    url: str
    admin: shipyard.Session
    workdir: Path
    suffix: str
    receiver_host: str
    epochs: int
    epoch_seconds: float
    drifted_requests: int
    steps: Steps = field(default_factory=Steps)
    team: str = ""
    project: str = ""
    ana: shipyard.Session | None = None
    lee: shipyard.Session | None = None
    invoker_key: str = ""
    gateway_url: str = ""

    # helpers ---------------------------------------------------------------------------

    @property
    def scientist(self) -> shipyard.Session:
        assert self.ana is not None, "the team is made in step 1"
        return self.ana

    @property
    def lead(self) -> shipyard.Session:
        assert self.lee is not None, "the team is made in step 1"
        return self.lee

    def run(self) -> None:
        with self.steps.step("the platform admin makes a team, a project and two people"):
            self.make_team()
        with self.steps.step("ana uploads marketing.csv as a dataset version"):
            dataset = self.upload_data()
        with self.steps.step("ana trains on 2 spot instances; one is reclaimed mid-training"):
            job = self.train(dataset)
        with self.steps.step("ana registers the model"):
            version = self.register(job)
        with self.steps.step("lee approves it (four eyes: not the person who registered it)"):
            self.approve(version)
        with self.steps.step(f"ana promotes it to dev as endpoint {ENDPOINT}"):
            self.promote(version)
        with self.steps.step("an application invokes the endpoint"):
            self.invoke()
        receiver = Receiver(self.receiver_host)
        try:
            with self.steps.step("ana puts a drift monitor on it; lee subscribes the team's chat"):
                self.monitor(dataset, job, receiver)
            with self.steps.step("traffic drifts: the monitor alerts and retrains"):
                self.drift(receiver)
        finally:
            receiver.close()
        self.steps.summary()

    # 1 ----------------------------------------------------------------------------------

    def make_team(self) -> None:
        self.team, self.project = f"growth-{self.suffix}", f"growth-{self.suffix}/churn"
        self.admin.create_team(self.team, description="customer growth: churn and campaigns")
        self.admin.create_project(self.project, description="who leaves next month")
        say(f"team {self.team}, project {self.project}")
        sessions = {}
        for person, role in (("ana", "scientist"), ("lee", "lead")):
            username, password = f"{person}-{self.suffix}", secrets.token_urlsafe(16)
            self.admin.create_user(username, password)
            self.admin.add_member(self.team, username, role)
            sessions[person] = shipyard.Session.login(self.url, username, password)
            say(f"{username}: {role}")
        self.ana, self.lee = sessions["ana"], sessions["lee"]
        self.gateway_url = str(self.admin.info()["gateway_url"]).rstrip("/")

    # 2 ----------------------------------------------------------------------------------

    def upload_data(self) -> str:
        path = self.workdir / "marketing.csv"
        x, y = generate_data.labelled(generate_data.ROWS)
        generate_data.write_csv(path, x, y)
        uploaded = self.scientist.datasets(self.project).upload(
            DATASET, path, description="synthetic customers, seed 23"
        )
        columns = [c["name"] for c in uploaded["schema"]]
        say(f"{path}: {uploaded['row_count']} rows, columns {', '.join(columns)}")
        expect(uploaded["row_count"] == generate_data.ROWS, f"row count: {uploaded['row_count']}")
        expect(columns == [*generate_data.FEATURES, "churn"], f"columns: {columns}")
        ref = f"{DATASET}:{uploaded['version']}"
        say(f"dataset version {ref} (sha256 {uploaded['digest'][:12]}…)")
        return ref

    # 3 ----------------------------------------------------------------------------------

    def train(self, dataset: str) -> shipyard.Job:
        estimator = shipyard.Estimator(
            entry_point="train.py",
            source_dir=HERE,
            instance_count=2,
            spot=True,
            checkpointing=True,
            hyperparameters={"epochs": self.epochs, "epoch-seconds": self.epoch_seconds},
            metric_definitions=METRICS,
            project=self.project,
            session=self.scientist,
            base_job_name="churn",
        )
        job = estimator.fit({"train": f"dataset:{dataset}"}, wait=False)
        say(f"job {job.name} submitted: 2 x cpu.small, spot, checkpointing")
        self.interrupt_once(job)
        job.wait()
        say(f"job {job.name}: {job.status} after {job.attempt} attempts")
        expect(job.status == "Completed", f"the job ended {job.status}: {job.reason}")
        expect(job.attempt >= 2, f"the job ran {job.attempt} attempt(s); expected a resumed one")
        resumed = [line for line in job.logs() if "resumed from epoch" in line]
        for line in resumed:
            say(f"log: {line}")
        expect(bool(resumed), "no instance said 'resumed from epoch N' after the interruption")
        wrote = [line for line in job.logs() if "wrote model.joblib" in line]
        say(f"log: {wrote[-1] if wrote else '(no model line)'}")
        say(f"model artifact {job.model_artifact}")
        return job

    def interrupt_once(self, job: shipyard.Job) -> None:
        """Interrupt once a checkpoint is in the store, so there is something to resume from
        (the platform syncs SM_CHECKPOINT_DIR every SHIPYARD_CHECKPOINT_SYNC_S seconds)."""
        store = self.scientist.artifacts(self.project)
        prefix = f"jobs/{job.name}/checkpoints/"

        def checkpointed() -> bool:
            return job.refresh().status == "Running" and bool(store.ls(prefix))

        wait_for("the first synced checkpoint", checkpointed, timeout=180)
        epochs = [line for line in job.logs() if "epoch=" in line]
        say(f"running, checkpoint synced; last log line: {epochs[-1] if epochs else '-'}")
        job.interrupt()
        wait_for("the next attempt", lambda: job.refresh().attempt > 1, timeout=60)
        say(f"interrupted like a spot reclaim: now {job.status}, attempt {job.attempt}")

    # 4, 5 ---------------------------------------------------------------------------------

    def register(self, job: shipyard.Job) -> shipyard.ModelVersion:
        version = job.register(
            GROUP,
            flavor="sklearn",
            signature=SIGNATURE,
            example=EXAMPLE,
            description="SGD logistic regression on marketing.csv",
        )
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(version.metrics.items()))
        dangerous = version.scan["dangerous"]
        say(f"{GROUP} v{version.version}: {version.status}, pickle scan dangerous={dangerous}")
        say(f"metrics {metrics}; registered by {version.registered_by}")
        expect(version.status == "PendingManualApproval", f"status {version.status}")
        return version

    def approve(self, version: shipyard.ModelVersion) -> None:
        approved = self.lead.models(self.project).approve(
            GROUP, version.version, "metrics and card reviewed"
        )
        say(f"{GROUP} v{approved.version}: {approved.status} by {approved.decided_by}")
        expect(approved.status == "Approved", f"status {approved.status}")
        expect(approved.decided_by == f"lee-{self.suffix}", f"decided by {approved.decided_by}")

    # 6 ----------------------------------------------------------------------------------

    def promote(self, version: shipyard.ModelVersion) -> None:
        self.free_endpoint_name()
        hosting = self.scientist.hosting(self.project)
        run = hosting.promote(
            GROUP,
            version.version,
            "dev",
            endpoint_name=ENDPOINT,
            predict="proba",
            model_version_label=LABEL,
            data_capture={"enabled": True, "sampling_percent": 100},  # what monitors read
        )
        for step in run["steps"]:
            if step.get("step") != "request":
                say(f"promotion {step.get('step')}: {step.get('status')} {step.get('detail', '')}")
        expect(run["status"] == "Succeeded", f"promotion {run['status']}: {run['reason']}")
        endpoint = hosting.endpoint(ENDPOINT).as_dict()
        config = hosting.config(endpoint["current_config"])
        expect(config["data_capture"]["enabled"], f"config {config['name']} captures nothing")
        say(f"endpoint {ENDPOINT}: {endpoint['status']} on {config['name']} (data capture 100%)")

    def free_endpoint_name(self) -> None:
        """Endpoint names are platform-wide: delete one an earlier run left behind, with the
        monitors that watched it (they would only find no traffic from now on)."""
        for team in self.admin.list_teams():
            for project in self.admin.list_projects(team["name"]):
                ref = f"{team['name']}/{project['name']}"
                hosting = self.admin.hosting(ref)
                if not any(e["name"] == ENDPOINT for e in hosting.endpoints()):
                    continue
                say(f"deleting {ENDPOINT}, left in {ref} by an earlier run")
                for monitor in self.admin.monitoring(ref).monitors():
                    if monitor.endpoint == ENDPOINT:
                        monitor.delete()
                hosting.delete_endpoint(ENDPOINT)

    # 7 ----------------------------------------------------------------------------------

    def invoke(self) -> None:
        key = self.lead.create_key(role="invoker", project=self.project, name="churn-app")
        self.invoker_key = key["api_key"]
        say(f"lee made an invoker key for the application ({key['key_id']})")
        answer = self.post(EXAMPLE).json()
        say(f"POST {self.gateway_url}/endpoints/{ENDPOINT}/invocations {json.dumps(EXAMPLE)}")
        say(f"→ {json.dumps(answer)}")
        prediction = answer.get("prediction") if isinstance(answer, dict) else None
        expect(isinstance(prediction, float), f"prediction is not a float: {answer}")
        expect(0.0 <= float(prediction or 0) <= 1.0, f"prediction outside [0, 1]: {answer}")
        expect(answer.get("model_version") == LABEL, f"model_version: {answer}")
        expect(float(prediction or 0) > 0.5, f"the example customer should churn: {answer}")

    def post(self, payload: Any, client: httpx.Client | None = None) -> httpx.Response:
        """One invocation as an application makes it: the gateway, an invoker key, JSON."""
        url = f"{self.gateway_url}/endpoints/{ENDPOINT}/invocations"
        headers = {"Authorization": f"Bearer {self.invoker_key}"}
        if client is None:
            response = httpx.post(url, json=payload, headers=headers, timeout=30)
        else:
            response = client.post(url, json=payload, headers=headers)
        expect(response.status_code == 200, f"{response.status_code}: {response.text[:300]}")
        return response

    # 8 ----------------------------------------------------------------------------------

    def monitor(self, dataset: str, job: shipyard.Job, receiver: Receiver) -> None:
        monitoring = self.scientist.monitoring(self.project)
        baseline = monitoring.create_baseline(DATASET, dataset=dataset, exclude=["churn"])
        say(
            f"baseline {baseline['name']} v{baseline['version']} of {dataset}: "
            f"{baseline['rows']} rows, {len(baseline['features'])} features"
        )
        allowed = self.admin.webhook_allowlist()
        entry = f"{self.receiver_host}/32"
        if entry not in allowed:
            self.admin.set_webhook_allowlist([*allowed, entry])
        say(f"the platform admin allow-listed {entry} for webhooks")
        hook = self.lead.events(self.project).create_webhook(
            receiver.url, event_types=["monitor.*"], description="the team's chat"
        )
        say(f"lee's webhook {hook['id'][:8]}… → {receiver.url} (monitor.*)")
        monitor = monitoring.create_monitor(
            MONITOR,
            endpoint=ENDPOINT,
            baseline=DATASET,
            cron="0 * * * *",
            window_s=3600,
            retrain_job=self.retrain_spec(dataset, job),
            register_group=GROUP,
        )
        rules = "; ".join(
            f"{r['metric']}{r['op']}{r['threshold']:g}" for r in monitor.as_dict()["rules"]
        )
        say(f"monitor {monitor.name} on {monitor.endpoint}: hourly; rules {rules}")
        say(f"on an alert it starts {monitor.as_dict()['actions']['retrain']['job']['name']}-…")

    def retrain_spec(self, dataset: str, job: shipyard.Job) -> dict[str, Any]:
        """The job the monitor starts on an alert: the same code (the source the Estimator
        uploaded for the first job) on the dataset; in production, its newest version."""
        return {
            "name": "churn-retrain",
            "entry_point": "train.py",
            "source": f"jobs-src/{job.name}/source.tar.gz",
            "inputs": {"train": f"dataset:{dataset}"},
            "hyperparameters": {"epochs": max(2, self.epochs // 4), "epoch-seconds": 0},
            "metric_definitions": METRICS,
            "instance_count": 1,
            "spot": True,
            "checkpointing": True,
        }

    # 9 ----------------------------------------------------------------------------------

    def drift(self, receiver: Receiver) -> None:
        drifted = generate_data.customers(self.drifted_requests, seed=123, drift=True)
        trained = generate_data.customers(generate_data.ROWS)
        scores, captured = self.send(drifted)
        say(
            f"sent {len(scores)} requests: a campaign brought older, bigger-spending customers "
            f"(mean age {drifted[:, 0].mean():.0f}, spend {drifted[:, 2].mean():.0f}; in the "
            f"training data {trained[:, 0].mean():.0f} and {trained[:, 2].mean():.0f})"
        )
        say(f"mean predicted churn {sum(scores) / len(scores):.2f}")
        expect(len(captured) == len(scores), f"{len(captured)} of {len(scores)} were captured")
        self.wait_for_captures(captured)
        say(f"all {len(captured)} are captured in the store (capture/{ENDPOINT}/…)")
        execution = self.scientist.monitoring(self.project).monitor(MONITOR).run()
        summary = execution["summary"]
        say(
            f"execution {execution['id'][:8]}…: {execution['status']}, verdict "
            f"{execution['verdict']}, {summary.get('records')} records"
        )
        expect(execution["status"] == "Completed", f"execution {execution}")
        drifted_features = summary.get("drifted_features") or []
        say(f"drifted features: {', '.join(drifted_features) or '-'}")
        for alert in execution["alerts"]:
            feature = f"[{alert['feature']}]" if alert.get("feature") else ""
            rule = f"{alert['metric']}{feature} = {alert['value']:g}"
            say(f"alert: {rule} {alert['op']} {alert['threshold']:g}")
        expect(execution["verdict"] == "alert", f"verdict {execution['verdict']}")
        expect("age" in drifted_features, f"age should have drifted: {drifted_features}")
        self.alert_delivered(receiver, execution["id"])
        self.retraining(execution)

    def send(self, rows: Any) -> tuple[list[float], set[str]]:
        """Each row as one request; the scores, and the event ids of the captured ones (the
        gateway names the capture record of a request in ``x-shipyard-event-id``)."""
        scores, captured = [], set()
        with httpx.Client(timeout=30) as client:
            for row in rows:
                response = self.post({"features": generate_data.row_values(row)}, client)
                scores.append(float(response.json()["prediction"]))
                if event_id := response.headers.get("x-shipyard-event-id"):
                    captured.add(event_id)
        return scores, captured

    def wait_for_captures(self, event_ids: set[str]) -> None:
        """Until every record in ``event_ids`` is in the store: the gateway writes captures in
        the background, a batch every SHIPYARD_GATEWAY_CAPTURE_INTERVAL_S seconds."""
        store = self.scientist.artifacts(self.project)
        seen: set[str] = set()
        read: set[tuple[str, int]] = set()

        def all_stored() -> bool:
            for item in store.ls(f"capture/{ENDPOINT}/"):
                if (item.path, item.version) not in read:
                    body = store.get(item.path, version=item.version)
                    assert isinstance(body, bytes)
                    lines = body.decode().splitlines()
                    seen.update(json.loads(line)["event_id"] for line in lines if line.strip())
                    read.add((item.path, item.version))
            return event_ids <= seen

        wait_for(f"{len(event_ids)} captured records in the store", all_stored, 120, every=1.0)

    def alert_delivered(self, receiver: Receiver, execution_id: str) -> None:
        """The alert of this execution (the hourly schedule may have run meanwhile too)."""

        def delivered() -> dict[str, Any] | None:
            for event in receiver.of_type("monitor.violation"):
                if event["data"].get("execution") == execution_id:
                    return event
            return None

        event = wait_for("the monitor.violation delivery", delivered, timeout=60)
        say(f"webhook delivered {event['type']} to {receiver.url}")
        say(f"chat message: {event['data']['text']}")
        expect(bool(event["data"].get("text")), f"no text in {event}")

    def retraining(self, execution: dict[str, Any]) -> None:
        name = execution.get("retrain_job")
        expect(bool(name), f"no retraining job started: {execution.get('error')}")
        say(f"retraining job {name} started by the monitor")
        jobs = self.scientist.jobs(self.project)

        def ended() -> shipyard.Job | None:
            job = jobs.get(str(name))
            return job if job.terminal else None

        job = wait_for("the end of the retraining job", ended, timeout=300)
        say(f"retraining job {name}: {job.status}")
        expect(job.status == "Completed", f"the retraining job ended {job.status}: {job.reason}")
        models = self.scientist.models(self.project)

        def registered() -> shipyard.ModelVersion | None:
            return next((v for v in models.versions(GROUP) if v.job_name == name), None)

        version = wait_for("the retrained model's registration", registered, timeout=60)
        say(
            f"{GROUP} v{version.version} registered from {name}: {version.status} "
            f"(a lead approves it before it replaces v{version.version - 1})"
        )


# --- entry point -------------------------------------------------------------------------


def admin_session(url: str | None, credentials: Path) -> tuple[str, shipyard.Session]:
    """The platform admin, from ``shipyard up``'s credentials file."""
    if not credentials.is_file():
        raise SystemExit(
            f"no admin credentials at {credentials}: start the platform (make up) or pass "
            "--credentials"
        )
    creds = json.loads(credentials.read_text())
    url = (url or creds["url"]).rstrip("/")
    return url, shipyard.Session(url, api_key=creds["api_key"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    home = Path(os.environ.get("SHIPYARD_HOME", Path.home() / ".shipyard"))
    parser = argparse.ArgumentParser(description="The churn walk-through, end to end.")
    parser.add_argument("--url", default=os.environ.get("SHIPYARD_URL"), help="the API's URL")
    parser.add_argument(
        "--credentials",
        type=Path,
        default=os.environ.get("SHIPYARD_ADMIN_CREDENTIALS", home / "admin-credentials.json"),
        help="the admin credentials file shipyard up wrote",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "shipyard-churn-walkthrough",
        help="where marketing.csv is written",
    )
    parser.add_argument(
        "--suffix", default=secrets.token_hex(2), help="of the names it makes (default: random)"
    )
    parser.add_argument(
        "--receiver-host", default="127.0.0.9", help="where the webhook receiver listens"
    )
    parser.add_argument("--epochs", type=int, default=30, help="of the training job")
    parser.add_argument(
        "--epoch-seconds", type=float, default=0.6, help="the least time an epoch takes"
    )
    parser.add_argument(
        "--drifted-requests", type=int, default=300, help="how many drifted customers to send"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url, admin = admin_session(args.url, args.credentials)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"The churn walk-through on {url} (run {args.suffix})")
    walkthrough = Walkthrough(
        url=url,
        admin=admin,
        workdir=args.workdir,
        suffix=args.suffix,
        receiver_host=args.receiver_host,
        epochs=args.epochs,
        epoch_seconds=args.epoch_seconds,
        drifted_requests=args.drifted_requests,
    )
    try:
        walkthrough.run()
    except (WalkthroughFailed, shipyard.ShipyardError) as failed:
        step = walkthrough.steps.current
        print(f"\nFAILED in step {step}: {type(failed).__name__}: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

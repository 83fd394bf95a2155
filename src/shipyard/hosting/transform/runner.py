"""What runs inside a transform job: the model over every record of the ``data`` channel.

``python -m shipyard.hosting.transform`` is started by the job runtime like any entry point,
so it reads the SageMaker contract: the model artifact in ``SM_CHANNEL_MODEL`` (a
``model.tar.gz`` or a single model file), the input files in ``SM_CHANNEL_DATA``, and writes
``<input file>.out`` into ``SM_OUTPUT_DATA_DIR``, which the job uploads when the process
exits 0. Its options arrive as the job's hyperparameters (``--content_type text/csv`` …).

The artifact is re-hashed against the registered manifest digest (the very bytes that will
be loaded: nothing can change between the API's check and this use), extracted safely into
``SM_MODEL_DIR`` and loaded with the model server's own handler, ``inference.py`` included,
so every output line is what the endpoint would have answered for that record.

With several instances the input files are shared out by index, as SageMaker's
``ShardedByS3Key`` does: instance ``i`` of ``n`` takes files ``i``, ``i + n``, … (sorted by
path). A record the model rejects ends the job with exit 1 and a failure reason naming the
file and line; progress lines (``transform: 120/300 records``) go to stdout, so the job's
streamed log shows how far along it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shipyard.hosting.modelserver import codecs
from shipyard.hosting.modelserver.errors import ModelLoadError
from shipyard.hosting.modelserver.flavors import FLAVORS, PredictOptions
from shipyard.hosting.modelserver.handler import Handler, load_handler, plan
from shipyard.hosting.modelserver.script import Context
from shipyard.hosting.transform import records
from shipyard.hosting.transform.records import Record, RecordError
from shipyard.kit.archives import UnsafeArchive, unpack
from shipyard.kit.files import write_private
from shipyard.registry.manifest import manifest_digest, manifest_of

OUTPUT_SUFFIX = ".out"
PROGRESS_EVERY_S = 1.0


class TransformFailed(Exception):
    """The transform cannot go on; the message is the job's failure reason."""


@dataclass(frozen=True, slots=True)
class Options:
    """How records are read, sent and written (the job's hyperparameters)."""

    content_type: str = records.CSV
    accept: str | None = None
    split_type: str = records.LINE
    strategy: str = records.MULTI
    max_payload_records: int = records.DEFAULT_PAYLOAD_RECORDS
    skip_header: bool = False
    flavor: str | None = None
    predict: str = "predict"
    model_label: str | None = None
    model_digest: str | None = None
    threads: int = 1

    @property
    def batch_size(self) -> int:
        return 1 if self.strategy == records.SINGLE else self.max_payload_records

    @property
    def answer_type(self) -> str:
        """What the model is asked to answer in: the family of the input unless told."""
        if self.accept:
            return records.wire_type(self.accept)
        return records.CSV if self.content_type == records.CSV else records.JSON


@dataclass(frozen=True, slots=True)
class Paths:
    model_channel: Path
    data_channel: Path
    model_dir: Path
    output_dir: Path


@dataclass(frozen=True, slots=True)
class Shard:
    """Which share of the input files this instance transforms."""

    index: int = 0
    count: int = 1

    def take(self, files: Sequence[str]) -> list[str]:
        return list(files[self.index :: self.count])


# --- the model ------------------------------------------------------------------------------


def prepare_model(channel: Path, target: Path, digest: str | None) -> Path:
    """The model directory: the channel's one artifact, verified, then unpacked safely."""
    found = sorted(path for path in channel.rglob("*") if path.is_file())
    if len(found) != 1:
        raise TransformFailed(
            f"the model channel holds {len(found)} files; expected one model artifact"
        )
    artifact = found[0]
    if digest:
        verify_artifact(artifact, digest)
    try:
        unpack(artifact, artifact.name, target)
    except (UnsafeArchive, OSError) as exc:
        raise TransformFailed(
            f"the model artifact {artifact.name} cannot be unpacked: {exc}"
        ) from exc
    return target


def verify_artifact(artifact: Path, digest: str) -> None:
    """Refuse bytes that are not the registered ones (same manifest as the registry's)."""
    actual = manifest_digest(manifest_of(artifact, artifact.name))
    if actual != digest:
        raise TransformFailed(
            f"the model artifact {artifact.name} changed since it was registered: its manifest "
            f"digest is {actual}, the registry's is {digest}"
        )


def load_model(model_dir: Path, options: Options) -> Handler:
    """The model server's handler for the model: same flavors, same inference.py contract."""
    predict = PredictOptions(mode=options.predict, threads=options.threads)
    try:
        return load_handler(plan(model_dir, options.flavor), predict, options.model_label)
    except ModelLoadError as exc:
        raise TransformFailed(f"the model could not be loaded: {exc.message}") from exc


# --- records --------------------------------------------------------------------------------


class Progress:
    """``transform: 120/300 records (40%) data.csv`` lines, at most one a second (and at the
    end of every file), so a long transform shows its pace without flooding the log."""

    def __init__(
        self,
        total: int,
        out: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self._out = out or sys.stdout
        self._clock = clock
        self._last = clock()

    def advance(self, count: int, name: str, *, force: bool = False) -> None:
        self.done += count
        now = self._clock()
        if force or now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self.say(f"{self.done}/{self.total} records ({self._percent()}%) {name}")

    def _percent(self) -> int:
        return 100 if self.total == 0 else self.done * 100 // self.total

    def say(self, message: str) -> None:
        print(f"transform: {message}", file=self._out, flush=True)


def input_files(data_dir: Path) -> list[str]:
    """Every file of the data channel, as sorted paths relative to it."""
    return sorted(
        path.relative_to(data_dir).as_posix() for path in data_dir.rglob("*") if path.is_file()
    )


def transform_file(
    handler: Handler, source: Path, dest: Path, name: str, options: Options, progress: Progress
) -> None:
    """Write one line per record of ``source`` into ``dest``, in order."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    found = records.read_records(source, options.split_type, options.skip_header)
    with dest.open("wb") as out:
        for batch in records.batches(found, options.batch_size):
            out.write(b"".join(line + b"\n" for line in answer(handler, batch, name, options)))
            progress.advance(len(batch), name)
    progress.advance(0, name, force=True)


def answer(handler: Handler, batch: list[Record], name: str, options: Options) -> list[bytes]:
    """The batch's output lines; a rejected batch is retried record by record to name the
    record the model refuses."""
    try:
        body, kind = records.request_for(batch, options.content_type, options.split_type)
    except RecordError as exc:
        raise TransformFailed(_where(name, exc.line or batch[0].line, exc.message)) from exc
    context = Context(
        content_type=kind, accept=options.answer_type, model_version=options.model_label
    )
    response = handler.respond(body, context)
    if response.status == 200:
        kind = codecs.media_type(response.content_type) or ""
        return _lines(response.body, kind, batch, name, options)
    detail = records.error_text(response.body)
    if len(batch) == 1:
        raise TransformFailed(
            _where(name, batch[0].line, f"the model rejected the record: {detail}")
        )
    for record in batch:  # raises naming the first record the model refuses on its own
        answer(handler, [record], name, options)
    reason = f"the model rejected this batch of {len(batch)} records (each alone is accepted)"
    raise TransformFailed(_where(name, batch[0].line, f"{reason}: {detail}", batch[-1].line))


def _lines(
    body: bytes, media_type: str, batch: list[Record], name: str, options: Options
) -> list[bytes]:
    if options.split_type == records.WHOLE:
        return [body.rstrip(b"\n")]  # the whole file's answer, as the model gave it
    try:
        return records.answer_lines(body, records.wire_type(media_type), len(batch))
    except RecordError as exc:
        raise TransformFailed(_where(name, batch[0].line, exc.message, batch[-1].line)) from exc


def _where(name: str, first: int, message: str, last: int | None = None) -> str:
    lines = f"line {first}" if last in (None, first) else f"lines {first}-{last}"
    return f"{name} {lines}: {message}"


def run(paths: Paths, options: Options, shard: Shard, out: IO[str] | None = None) -> int:
    """Transform this instance's share of the input files; the number of records."""
    mine = shard.take(input_files(paths.data_channel))
    totals = {
        name: records.count_records(
            paths.data_channel / name, options.split_type, options.skip_header
        )
        for name in mine
    }
    progress = Progress(sum(totals.values()), out)
    progress.say(
        f"{len(mine)} file(s), {progress.total} records for instance {shard.index + 1} of "
        f"{shard.count}"
    )
    handler = load_model(
        prepare_model(paths.model_channel, paths.model_dir, options.model_digest), options
    )
    started = time.monotonic()
    for name in mine:
        dest = paths.output_dir / f"{name}{OUTPUT_SUFFIX}"
        transform_file(handler, paths.data_channel / name, dest, name, options, progress)
    progress.say(f"done: {progress.done} records in {time.monotonic() - started:.1f}s")
    return progress.done


# --- the command line -----------------------------------------------------------------------


def _flag(text: str) -> bool:
    """A boolean hyperparameter as the runtime passes it (``True``/``False``)."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.hosting.transform",
        description="Run a model over every record of the data channel (a batch transform).",
    )
    parser.add_argument("--content_type", choices=records.CONTENT_TYPES, default=records.CSV)
    parser.add_argument("--accept", choices=records.CONTENT_TYPES, default=None)
    parser.add_argument("--split_type", choices=records.SPLIT_TYPES, default=records.LINE)
    parser.add_argument("--strategy", choices=records.STRATEGIES, default=records.MULTI)
    parser.add_argument("--max_payload_records", type=int, default=records.DEFAULT_PAYLOAD_RECORDS)
    parser.add_argument("--skip_header", type=_flag, default=False)
    parser.add_argument("--flavor", choices=FLAVORS, default=None)
    parser.add_argument("--predict", choices=("predict", "proba"), default="predict")
    parser.add_argument("--model_group", default=None, help="shown in messages only")
    parser.add_argument("--model_version", type=int, default=None)
    parser.add_argument("--model_digest", default=None)
    _path_arguments(parser, env)
    return parser


def _path_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Where things are: the job runtime's variables, or flags for a run by hand."""
    output_dir = env.get("SM_OUTPUT_DIR")
    parser.add_argument("--model-channel", type=Path, default=env.get("SM_CHANNEL_MODEL"))
    parser.add_argument("--data-channel", type=Path, default=env.get("SM_CHANNEL_DATA"))
    parser.add_argument("--model-dir", type=Path, default=env.get("SM_MODEL_DIR"))
    parser.add_argument("--output-dir", type=Path, default=env.get("SM_OUTPUT_DATA_DIR"))
    parser.add_argument(
        "--failure-file",
        type=Path,
        default=Path(output_dir) / "failure" if output_dir else None,
        help="where the failure reason is written (SageMaker's convention)",
    )
    parser.add_argument("--threads", type=int, default=int(env.get("SM_NUM_CPUS", "1")))


def _shard(env: Mapping[str, str]) -> Shard:
    hosts = json.loads(env.get("SM_HOSTS") or "[]") or ["algo-1"]
    current = env.get("SM_CURRENT_HOST") or hosts[0]
    return Shard(hosts.index(current), len(hosts))


def parse(argv: Sequence[str], env: Mapping[str, str]) -> tuple[Paths, Options, Path | None]:
    parser = _parser(env)
    args = parser.parse_args(argv)
    for flag in ("model_channel", "data_channel", "model_dir", "output_dir"):
        if getattr(args, flag) is None:
            parser.error(f"--{flag.replace('_', '-')} is required outside a job")
    if args.max_payload_records < 1:
        parser.error("--max_payload_records must be at least 1")
    paths = Paths(args.model_channel, args.data_channel, args.model_dir, args.output_dir)
    options = Options(
        content_type=args.content_type,
        accept=args.accept,
        split_type=args.split_type,
        strategy=args.strategy,
        max_payload_records=args.max_payload_records,
        skip_header=args.skip_header,
        flavor=args.flavor,
        predict=args.predict,
        model_label=f"v{args.model_version}" if args.model_version else None,
        model_digest=args.model_digest,
        threads=max(args.threads, 1),
    )
    return paths, options, args.failure_file


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Exit status 0 when every record was transformed; 1 with the reason on stderr and in
    the failure file, which the job shows as its failure reason."""
    env = os.environ if env is None else env
    paths, options, failure_file = parse(sys.argv[1:] if argv is None else argv, env)
    try:
        run(paths, options, _shard(env))
    except TransformFailed as exc:
        print(f"transform: error: {exc}", file=sys.stderr, flush=True)
        if failure_file is not None:
            write_private(failure_file, str(exc).encode())
        return 1
    return 0

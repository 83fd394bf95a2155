"""Train the churn classifier: a SageMaker-style script, run by ``Estimator(...).fit()``.

It reads the ``train`` channel (the dataset version arrives as a CSV in ``SM_CHANNEL_TRAIN``),
standardises the 10 features and trains a logistic-loss ``SGDClassifier`` one epoch at a time
with ``partial_fit``. After every epoch it writes a checkpoint to ``SM_CHECKPOINT_DIR``: the
platform syncs that directory to the store and, when a spot instance is reclaimed, puts it
back before the next attempt, so the script resumes from the last checkpoint (and says
``resumed from epoch N``) instead of starting over.

With several instances each one trains a replica on the whole data set with the same seed:
scikit-learn has no all-reduce, so this shows the multi-instance contract (``SM_HOSTS``,
``SM_CURRENT_HOST``) rather than a speed-up; the replicas are identical, which is also why
restoring algo-1's checkpoint on every instance is right. Rank 0 writes ``model.joblib`` (a
``StandardScaler`` + ``SGDClassifier`` pipeline, so ``predict_proba`` takes raw features) to
``SM_MODEL_DIR``.

Hyperparameters: ``--epochs`` (30), ``--lr`` (0.002, SGD's ``eta0``), ``--alpha`` (1e-4),
``--epoch-seconds`` (0.6: the least time an epoch takes; it stands in for a bigger data set
so that an interruption lands in the middle of training).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

LABEL = "churn"
CHECKPOINT = "checkpoint.joblib"
SEED = 23
HOLDOUT = 0.2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--epoch-seconds", type=float, default=0.6)
    args, _ = parser.parse_known_args()  # the platform passes every hyperparameter
    return args


def load(channel: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Feature names, features and labels of every CSV in the channel (header by name, so
    the column order of the file does not matter)."""
    names: list[str] = []
    rows: list[list[float]] = []
    labels: list[int] = []
    for path in sorted(channel.glob("*.csv")):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            names = [c for c in reader.fieldnames or [] if c != LABEL]
            for record in reader:
                rows.append([float(record[c]) for c in names])
                labels.append(int(record[LABEL]))
    if not rows:
        raise SystemExit(f"no rows in {channel}")
    return names, np.array(rows), np.array(labels)


def split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """A fixed hold-out (the same on every attempt and every instance)."""
    order = np.random.default_rng(SEED).permutation(len(y))
    cut = int(len(y) * (1 - HOLDOUT))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def restore(directory: Path) -> tuple[int, SGDClassifier | None]:
    """The epoch to start from and the classifier saved after the one before it."""
    path = directory / CHECKPOINT
    if not path.exists():
        return 0, None
    state: dict[str, Any] = joblib.load(path)
    return int(state["epoch"]), state["classifier"]


def save(directory: Path, epoch: int, classifier: SGDClassifier) -> None:
    """Write, then rename: the platform's sync skips ``*.tmp``, so a half-written checkpoint
    never reaches the store even if the instance dies in the middle of the write."""
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / (CHECKPOINT + ".tmp")
    joblib.dump({"epoch": epoch, "classifier": classifier}, partial)
    os.replace(partial, directory / CHECKPOINT)


def train_epoch(
    classifier: SGDClassifier, x: np.ndarray, y: np.ndarray, epoch: int, batch: int = 256
) -> None:
    """One pass in mini-batches, shuffled by the epoch's own seed, so an epoch replayed after
    a resume sees the same batches as it would have."""
    order = np.random.default_rng(SEED + epoch).permutation(len(y))
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        classifier.partial_fit(x[rows], y[rows], classes=np.array([0, 1]))


def main() -> None:
    args = parse_args()
    hosts: list[str] = json.loads(os.environ.get("SM_HOSTS", '["algo-1"]'))
    host = os.environ.get("SM_CURRENT_HOST", hosts[0])
    names, x, y = load(Path(os.environ["SM_CHANNEL_TRAIN"]))
    x_train, y_train, x_test, y_test = split(x, y)
    print(f"{host} of {len(hosts)}: {len(y)} rows, {len(names)} features: {', '.join(names)}")

    scaler = StandardScaler().fit(x_train)
    train_x, test_x = scaler.transform(x_train), scaler.transform(x_test)
    checkpoints = Path(os.environ["SM_CHECKPOINT_DIR"])
    start, classifier = restore(checkpoints)
    if classifier is None:
        classifier = SGDClassifier(
            loss="log_loss",
            learning_rate="constant",
            eta0=args.lr,
            alpha=args.alpha,
            random_state=SEED,
        )
    else:
        print(f"resumed from epoch {start}", flush=True)

    for epoch in range(start, args.epochs):
        began = time.monotonic()
        train_epoch(classifier, train_x, y_train, epoch)
        scores = classifier.predict_proba(test_x)[:, 1]
        auc = roc_auc_score(y_test, scores)
        loss = log_loss(y_test, scores, labels=[0, 1])
        time.sleep(max(0.0, args.epoch_seconds - (time.monotonic() - began)))
        save(checkpoints, epoch + 1, classifier)
        print(f"epoch={epoch + 1}/{args.epochs} loss={loss:.4f} auc={auc:.4f}", flush=True)

    if host == hosts[0]:
        model = Pipeline([("scale", scaler), ("classify", classifier)])
        joblib.dump(model, Path(os.environ["SM_MODEL_DIR"]) / "model.joblib")
        print(f"{host} wrote model.joblib", flush=True)


if __name__ == "__main__":
    main()

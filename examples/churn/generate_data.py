"""Write a synthetic ``marketing.csv``: one row per customer, 10 features and a ``churn`` label.

The rows are drawn from a fixed seed, so every run (and CI) trains on the same data and the
walk-through's numbers are reproducible. Churn follows a logistic model of the features that a
marketing team would recognise: young, rarely visiting, non-spending, month-to-month customers
with support tickets and failed payments leave; loyal, auto-paying, long-tenured ones stay. The
example customer of the walk-through, ``[25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]``, is such a leaver.

``customers(n, seed, drift=True)`` draws the *drifted* population the walk-through sends to the
endpoint later: a campaign brought in older, big-spending customers on annual plans — traffic
the model never saw, which the drift monitor must notice.

Usage::

    python examples/churn/generate_data.py -o marketing.csv            # 5000 rows, seed 23
    python examples/churn/generate_data.py -o drifted.json --drift --rows 300 --json

``--json`` writes the rows (without labels) as one request body for the endpoint,
``{"instances": [[...], ...]}``, rather than a CSV file.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

FEATURES = (
    "age",  # years
    "visits_30d",  # app or store visits in the last 30 days
    "spend_30d",  # money spent in the last 30 days
    "monthly_plan",  # 1: month-to-month contract, 0: annual
    "support_tickets",  # tickets opened in the last 90 days
    "payment_failures",  # failed payments in the last year
    "autopay",  # 1: pays by direct debit
    "email_opt_in",  # 1: receives the newsletter
    "promo_90d",  # 1: used a promotion in the last 90 days
    "tenure_years",  # whole years as a customer
)
LABEL = "churn"
EXAMPLE = [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]
SEED = 23
ROWS = 5000


def customers(n: int, seed: int = SEED, *, drift: bool = False) -> np.ndarray:
    """``n`` rows of the 10 features (as floats, in ``FEATURES`` order)."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(52 if drift else 38, 12, n), 18, 90).round()
    visits = rng.poisson(2.5 if drift else 6.0, n)
    spend = rng.gamma(2.0, 140.0 if drift else 30.0, n) * (visits > 0)
    monthly = rng.random(n) < (0.15 if drift else 0.55)
    tickets = rng.poisson(0.8, n)
    failures = rng.poisson(0.3, n)
    autopay = rng.random(n) < 0.6
    opt_in = rng.random(n) < 0.45
    promo = rng.random(n) < 0.3
    tenure = np.minimum(rng.poisson(3.0, n), 25)
    columns = (age, visits, spend.round(2), monthly, tickets, failures, autopay, opt_in, promo)
    return np.column_stack([*columns, tenure]).astype(float)


def churn_probability(x: np.ndarray) -> np.ndarray:
    """The true (hidden) churn model the label is drawn from."""
    age, visits, spend, monthly, tickets, failures, autopay, opt_in, promo, tenure = x.T
    logit = (
        -0.5
        - 0.04 * (age - 38)
        - 0.22 * (visits - 6)
        - 0.012 * spend
        + 1.0 * monthly
        + 0.55 * tickets
        + 0.8 * failures
        - 0.9 * autopay
        - 0.3 * opt_in
        - 0.4 * promo
        - 0.35 * tenure
    )
    return np.asarray(1 / (1 + np.exp(-logit)))


def labelled(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Features and a churn label drawn from ``churn_probability``."""
    x = customers(n, seed)
    rng = np.random.default_rng(seed + 1)
    y = (rng.random(n) < churn_probability(x)).astype(int)
    return x, y


def write_csv(path: Path, x: np.ndarray, y: np.ndarray | None) -> None:
    """Integers as integers (the flags and counts), spend with two decimals."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*FEATURES, *([LABEL] if y is not None else [])])
        for i, row in enumerate(x):
            label = [int(y[i])] if y is not None else []
            writer.writerow([*row_values(row), *label])


def as_request(x: np.ndarray) -> dict[str, list[list[float | int]]]:
    """Rows as a batch request body, each value as the CSV has it (ints stay ints)."""
    return {"instances": [row_values(row) for row in x]}


def row_values(row: np.ndarray) -> list[float | int]:
    """Counts and flags as ints, spend as a float: what an application would send."""
    pairs = zip(FEATURES, row, strict=True)
    return [float(v) if name == "spend_30d" else int(v) for name, v in pairs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("marketing.csv"))
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--drift", action="store_true", help="the drifted population, without labels"
    )
    parser.add_argument("--json", action="store_true", help="a request body, not a CSV")
    args = parser.parse_args(argv)
    if args.drift:
        x, y = customers(args.rows, args.seed + 100, drift=True), None
        what = "drifted customers (no label)"
    else:
        x, y = labelled(args.rows, args.seed)
        what = f"customers, churn rate {y.mean():.1%}"
    if args.json:
        args.output.write_text(json.dumps(as_request(x)))
        what = what.split(",")[0] + " as one request body"
    else:
        write_csv(args.output, x, y)
    print(f"wrote {args.output}: {args.rows} {what}")


if __name__ == "__main__":
    main()

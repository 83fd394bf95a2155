"""Run-search filter and order_by parsing: MLflow's grammar, typed values, exact error offsets."""

from __future__ import annotations

import pickle
import re
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.tracking.filters import (
    ATTRIBUTES,
    MAX_COMPARISONS,
    MAX_FILTER_LENGTH,
    NUMERIC_ATTRIBUTES,
    Comparison,
    Entity,
    FilterSyntaxError,
    OrderKey,
    parse_filter,
    parse_order_by,
)


def one(text: str) -> Comparison:
    [comparison] = parse_filter(text)
    return comparison


def error_of(text: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)
    return caught.value


# -- the happy path ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n "])
def test_an_absent_or_blank_filter_matches_everything(text: str | None) -> None:
    assert parse_filter(text) == []


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_metrics_take_every_numeric_operator(op: str) -> None:
    assert one(f"metrics.auc {op} 0.5") == Comparison("metric", "auc", op, 0.5, 0)


@pytest.mark.parametrize(
    ("literal", "value"),
    [("1", 1.0), ("-2", -2.0), ("+3.5", 3.5), (".5", 0.5), ("5.", 5.0), ("1e3", 1000.0),
     ("-1.5E-2", -0.015), ("2e+2", 200.0), ("0", 0.0)],
)  # fmt: skip
def test_numbers_in_every_spelling(literal: str, value: float) -> None:
    assert one(f"metrics.loss < {literal}").value == value


def test_a_number_can_touch_its_operator() -> None:
    assert one("metrics.loss>=-1") == Comparison("metric", "loss", ">=", -1.0, 0)


@pytest.mark.parametrize("entity", ["param", "tag"])
@pytest.mark.parametrize("op", ["=", "!=", "LIKE", "ILIKE"])
def test_params_and_tags_take_string_operators(entity: Entity, op: str) -> None:
    assert one(f"{entity}s.k {op} 'v%'") == Comparison(entity, "k", op, "v%", 0)


@pytest.mark.parametrize("op", ["IN", "NOT IN"])
@pytest.mark.parametrize(
    "identifier",
    ["params.k", "tags.k", "attributes.run_id", "attributes.status", "datasets.digest"],
)
def test_in_lists_on_every_string_key(identifier: str, op: str) -> None:
    comparison = one(f"{identifier} {op} ('a', \"b\",'c')")
    assert (comparison.op, comparison.value) == (op, ("a", "b", "c"))


def test_an_in_list_of_one() -> None:
    assert one("params.k IN ('a')").value == ("a",)


@pytest.mark.parametrize("prefix", ["metrics", "params", "tags"])
@pytest.mark.parametrize("op", ["IS NULL", "IS NOT NULL"])
def test_null_tests(prefix: str, op: str) -> None:
    comparison = one(f"{prefix}.k {op}")
    assert (comparison.op, comparison.value) == (op, None)


@pytest.mark.parametrize(
    ("text", "op"),
    [("params.k like 'a'", "LIKE"), ("params.k iLike 'a'", "ILIKE"), ("params.k in ('a')", "IN"),
     ("params.k not in ('a')", "NOT IN"), ("params.k Not  In ('a')", "NOT IN"),
     ("params.k is null", "IS NULL"), ("params.k is not null", "IS NOT NULL")],
)  # fmt: skip
def test_word_operators_are_case_insensitive(text: str, op: str) -> None:
    assert one(text).op == op


@pytest.mark.parametrize(
    ("prefix", "entity"),
    [("metric", "metric"), ("metrics", "metric"), ("METRICS", "metric"),
     ("param", "param"), ("params", "param"), ("parameter", "param"), ("Parameters", "param"),
     ("tag", "tag"), ("tags", "tag"),
     ("attribute", "attribute"), ("attributes", "attribute"), ("attr", "attribute"),
     ("run", "attribute"),
     ("dataset", "dataset"), ("datasets", "dataset")],
)  # fmt: skip
def test_every_prefix_spelling(prefix: str, entity: Entity) -> None:
    key, value = {
        "metric": ("m", "1"),
        "attribute": ("status", "'x'"),
        "dataset": ("name", "'x'"),
    }.get(entity, ("k", "'x'"))
    assert one(f"{prefix}.{key} = {value}").entity == entity


def test_everything_after_the_first_dot_is_the_key() -> None:
    assert one("tags.mlflow.runName = 'a'") == Comparison("tag", "mlflow.runName", "=", "a", 0)


def test_bare_keys_may_hold_dashes_slashes_and_digits() -> None:
    assert one("metrics.val/loss-2_b.x < 1").key == "val/loss-2_b.x"


@pytest.mark.parametrize(
    ("text", "key"),
    [("metrics.`my metric` > 1", "my metric"), ('metrics."my metric" > 1', "my metric"),
     (r"metrics.`a\`b` > 1", "a`b"), (r'metrics."a\"b" > 1', 'a"b'),
     ("metrics.`a=1 AND 'x'` > 1", "a=1 AND 'x'"), ("metrics.`é 北` > 1", "é 北")],
)  # fmt: skip
def test_quoted_keys_allow_any_characters(text: str, key: str) -> None:
    assert one(text).key == key


@pytest.mark.parametrize(
    ("literal", "value"),
    [("'plain'", "plain"), ('"double"', "double"), (r"'it\'s'", "it's"),
     (r'"say \"hi\""', 'say "hi"'), ("\"it's\"", "it's"), ("'say \"hi\"'", 'say "hi"'),
     (r"'back\\slash'", "back\\slash"), (r"'50\%'", r"50\%"), ("''", ""),
     ("'a AND b'", "a AND b"), ("'line\nbreak'", "line\nbreak")],
)  # fmt: skip
def test_string_literals_and_their_escapes(literal: str, value: str) -> None:
    assert one(f"params.k = {literal}").value == value


@pytest.mark.parametrize(
    ("key", "canonical"),
    [*((name, name) for name in sorted(ATTRIBUTES)),
     ("runName", "run_name"), ("`run name`", "run_name"), ("`Run Name`", "run_name"),
     ("created", "start_time"), ("Created", "start_time")],
)  # fmt: skip
def test_attribute_keys_are_canonicalised(key: str, canonical: str) -> None:
    value = "1" if canonical in NUMERIC_ATTRIBUTES else "'x'"
    assert one(f"attributes.{key} = {value}").key == canonical


def test_numeric_attributes_compare_with_numbers() -> None:
    assert one("attr.start_time >= 1700000000000") == Comparison(
        "attribute", "start_time", ">=", 1.7e12, 0
    )


@pytest.mark.parametrize("key", ["name", "digest", "context"])
def test_dataset_fields(key: str) -> None:
    assert one(f"datasets.{key} LIKE 'train%'") == Comparison("dataset", key, "LIKE", "train%", 0)


def test_a_conjunction_keeps_order_and_positions() -> None:
    text = "metrics.auc > 0.9 and params.model = 'xgb' AND\ttags.team != \"ml\""
    assert parse_filter(text) == [
        Comparison("metric", "auc", ">", 0.9, 0),
        Comparison("param", "model", "=", "xgb", 22),
        Comparison("tag", "team", "!=", "ml", 47),
    ]


def test_whitespace_is_optional_between_symbols() -> None:
    assert parse_filter("metrics.a>1AND params.b='x'AND params.c IN('y')") == [
        Comparison("metric", "a", ">", 1.0, 0),
        Comparison("param", "b", "=", "x", 15),
        Comparison("param", "c", "IN", ("y",), 31),
    ]


def test_keywords_can_be_keys() -> None:
    assert one("params.and = 'or'") == Comparison("param", "and", "=", "or", 0)


# -- errors: message and exact position ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("metrics.auc >", "expected a value", 13),
        ("metrics.auc > 0.9 AND", "expected a comparison", 21),
        ("metrics.auc > 0.9 AND ", "expected a comparison", 22),
        ("foo = 1", "unknown prefix 'foo'", 0),
        ("a.b = 1 ", "unknown prefix 'a'", 0),
        ("metrics.auc ~ 1", "unknown operator '~'", 12),
        ("metrics.auc <> 1", "unknown operator '<>'", 12),
        ("metrics.auc == 1", "unknown operator '=='", 12),
        ("metrics.auc 1", "unknown operator '1'", 12),
        ("metrics.auc", "expected an operator", 11),
        ("metrics.a > 1 OR metrics.b > 1", "OR is not supported; combine conditions with AND", 14),
        ("metrics.a > 1 metrics.b > 1", "unexpected 'metrics'; join comparisons with AND", 14),
        ("metrics.a > 1 2", "unexpected '2'; join comparisons with AND", 14),
        ("metrics.a > 1 AND AND metrics.b > 1", "expected a comparison, got 'AND'", 18),
        ("AND metrics.b > 1", "expected a comparison, got 'AND'", 0),
        ("(metrics.a > 1)", "expected a comparison, got '('", 0),
        ("'x' = params.a", "expected a comparison, got \"'x'\"", 0),
        ("metrics = 1", "expected '.' and a key after 'metrics'", 7),
        ("metrics. = 1", "expected a key after 'metrics.'", 8),
        ("metrics.`` = 1", "expected a key after 'metrics.'", 8),
        ("metrics.`auc > 1", "unterminated quoted key", 8),
        ('params."a = 1', "unterminated quoted key", 7),
        ("params.a = 'abc", "unterminated string", 11),
        (r"params.a = 'abc\'", "unterminated string", 11),
        ('params.a = "abc', "unterminated string", 11),
        ("params.a IN ('x', 'y", "unterminated string", 18),
        ("metrics.auc = 'x'", "metrics.auc must be compared with a number", 14),
        ("metrics.`a b` = 'x'", "metrics.`a b` must be compared with a number", 16),
        ("attributes.end_time > '5'", "attributes.end_time must be compared with a number", 22),
        ("params.lr = 0.1", "params.lr must be compared with a quoted string", 12),
        ("tags.t = x", "tags.t must be compared with a quoted string", 9),
        ("attributes.status = 1", "attributes.status must be compared with a quoted string", 20),
        ("datasets.name = 1", "datasets.name must be compared with a quoted string", 16),
        ("metrics.a > 1e999", "number 1e999 is out of range", 12),
        ("params.a IN 'x'", "IN needs a parenthesised list of quoted strings", 12),
        ("params.a NOT IN", "NOT IN needs a parenthesised list of quoted strings", 15),
        ("params.a IN ()", "expected a quoted string, got ')'", 13),
        ("params.a IN ('x',)", "expected a quoted string, got ')'", 17),
        ("params.a IN ('x' 'y')", "expected ',' or ')', got \"'y'\"", 17),
        ("params.a IN ('x'", "expected ',' or ')'", 16),
        ("params.a IN (1)", "expected a quoted string, got '1'", 13),
        ("params.a NOT LIKE 'x'", "expected IN, got 'LIKE'", 13),
        ("params.a IS 'x'", "expected NULL, got \"'x'\"", 12),
        ("params.a IS NOT", "expected NULL", 15),
        ("metrics.a = 1 #", "unexpected '#'; join comparisons with AND", 14),
    ],
)
def test_error_messages_and_positions(text: str, message: str, position: int) -> None:
    error = error_of(text)
    assert (error.message, error.position) == (message, position)
    assert str(error) == f"{message} at position {position}"


@pytest.mark.parametrize(
    ("text", "position", "allowed"),
    [("metrics.a LIKE 'x'", 10, "=, !=, <, <=, >, >=, IS NULL, IS NOT NULL"),
     ("metrics.a IN ('x')", 10, "=, !=, <, <=, >, >=, IS NULL, IS NOT NULL"),
     ("attributes.start_time IS NULL", 22, "=, !=, <, <=, >, >="),
     ("params.a > 'x'", 9, "=, !=, LIKE, ILIKE, IN, NOT IN, IS NULL, IS NOT NULL"),
     ("tags.a <= 'x'", 7, "=, !=, LIKE, ILIKE, IN, NOT IN, IS NULL, IS NOT NULL"),
     ("attributes.status < 'x'", 18, "=, !=, LIKE, ILIKE, IN, NOT IN"),
     ("datasets.name IS NOT NULL", 14, "=, !=, LIKE, ILIKE, IN, NOT IN")],
)  # fmt: skip
def test_operators_a_key_does_not_support(text: str, position: int, allowed: str) -> None:
    error = error_of(text)
    assert error.position == position
    assert error.message.endswith(f"; use one of {allowed}")


def test_an_unknown_attribute_is_named_with_the_allowed_ones() -> None:
    error = error_of("attributes.colour = 'red'")
    assert error.position == 11
    assert error.message == (
        "unknown attribute 'colour'; expected one of artifact_uri, end_time, experiment_id, "
        "lifecycle_stage, run_id, run_name, start_time, status, user_id"
    )


def test_attribute_names_are_case_sensitive() -> None:
    assert error_of("attributes.STATUS = 'x'").message.startswith("unknown attribute 'STATUS'")


def test_an_unknown_dataset_field() -> None:
    error = error_of("datasets.`size` = 'x'")
    assert (error.message, error.position) == (
        "unknown dataset field 'size'; expected one of context, digest, name",
        9,
    )


def test_the_length_limit() -> None:
    fits = "metrics.a > 1".ljust(MAX_FILTER_LENGTH)
    assert len(parse_filter(fits)) == 1
    error = error_of(fits + " ")
    assert (error.message, error.position) == ("filter is longer than 10000 characters", 10000)


def test_the_comparison_limit() -> None:
    term = "metrics.a > 1"
    assert len(parse_filter(" AND ".join([term] * MAX_COMPARISONS))) == MAX_COMPARISONS
    error = error_of(" AND ".join([term] * (MAX_COMPARISONS + 1)))
    assert error.message == "filter has more than 100 comparisons"
    assert error.position == MAX_COMPARISONS * len(term + " AND ")


def test_the_error_is_a_value_error_and_survives_pickling() -> None:
    error = error_of("foo = 1")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.position, str(copy)) == (error.message, error.position, str(error))


# -- order_by ------------------------------------------------------------------------------------


def test_order_by_items() -> None:
    items = [
        "metrics.auc DESC",
        "params.lr",
        "attributes.start_time ASC",
        "metrics.`a b` desc",
        'tags."mlflow.runName"  Asc ',
        "attr.Created",
        "run.runName DESC",
    ]
    assert parse_order_by(items) == [
        OrderKey("metric", "auc", ascending=False),
        OrderKey("param", "lr", ascending=True),
        OrderKey("attribute", "start_time", ascending=True),
        OrderKey("metric", "a b", ascending=False),
        OrderKey("tag", "mlflow.runName", ascending=True),
        OrderKey("attribute", "start_time", ascending=True),
        OrderKey("attribute", "run_name", ascending=False),
    ]


@pytest.mark.parametrize("items", [None, [], ()])
def test_no_order_by(items: list[str] | None) -> None:
    assert parse_order_by(items) == []


def test_a_lone_string_is_one_item() -> None:
    assert parse_order_by("metrics.auc DESC") == [OrderKey("metric", "auc", ascending=False)]


@pytest.mark.parametrize(
    ("item", "message", "position"),
    [
        ("metrics.auc DOWN", "order_by[1]: expected ASC, DESC or the end, got 'DOWN'", 12),
        ("metrics.auc DESC x", "order_by[1]: expected the end, got 'x'", 17),
        ("metrics.auc DESC ASC", "order_by[1]: expected the end, got 'ASC'", 17),
        ("metrics.auc > 1", "order_by[1]: expected ASC, DESC or the end, got '>'", 12),
        ("", "order_by[1]: expected an identifier", 0),
        ("DESC", "order_by[1]: expected an identifier, got 'DESC'", 0),
        ("auc DESC", "order_by[1]: unknown prefix 'auc'", 0),
        ("attributes.colour", "order_by[1]: unknown attribute 'colour'; expected one of "
         "artifact_uri, end_time, experiment_id, lifecycle_stage, run_id, run_name, start_time, "
         "status, user_id", 11),
        ("datasets.name", "order_by[1]: cannot order by datasets", 0),
        ("metrics.`a b", "order_by[1]: unterminated quoted key", 8),
        ("x" * 10_001, "order_by[1]: order_by item is longer than 10000 characters", 10_000),
    ],
)  # fmt: skip
def test_order_by_errors_name_the_item(item: str, message: str, position: int) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_order_by(["params.ok", item])
    assert (caught.value.message, caught.value.position) == (message, position)


# -- properties ----------------------------------------------------------------------------------

_SPELLINGS: dict[Entity, list[str]] = {
    "metric": ["metric", "metrics"],
    "param": ["param", "params", "parameter", "parameters"],
    "tag": ["tag", "tags"],
    "attribute": ["attribute", "attributes", "attr", "run"],
    "dataset": ["dataset", "datasets"],
}
_BARE = st.from_regex(r"[A-Za-z0-9_./-]+", fullmatch=True)
_BARE_KEY_RE = re.compile(r"[\w.\-/]+")


def _quote(text: str, quote: str) -> str:
    return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def _random_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(word, flips, strict=True))


@st.composite
def _comparisons(draw: st.DrawFn) -> Comparison:
    entity: Entity = draw(st.sampled_from(list(_SPELLINGS)))
    if entity == "attribute":
        key = draw(st.sampled_from(sorted(ATTRIBUTES)))
    elif entity == "dataset":
        key = draw(st.sampled_from(["name", "digest", "context"]))
    else:
        key = draw(st.one_of(_BARE, st.text(min_size=1)))
    numeric = entity == "metric" or key in NUMERIC_ATTRIBUTES
    ops = ["=", "!=", "<", "<=", ">", ">="] if numeric else ["=", "!=", "LIKE", "ILIKE", "IN"]
    ops += ["IS NULL", "IS NOT NULL"] if entity in ("metric", "param", "tag") else []
    ops += ["NOT IN"] if not numeric else []
    op = draw(st.sampled_from(ops))
    value: float | str | tuple[str, ...] | None
    if op in ("IS NULL", "IS NOT NULL"):
        value = None
    elif op in ("IN", "NOT IN"):
        value = tuple(draw(st.lists(st.text(), min_size=1, max_size=4)))
    elif numeric:
        value = draw(st.floats(allow_nan=False, allow_infinity=False))
    else:
        value = draw(st.text())
    return Comparison(entity, key, op, value, 0)


@st.composite
def _formatted(draw: st.DrawFn, comparison: Comparison) -> str:
    def gap() -> str:
        return draw(st.sampled_from([" ", "  ", "\t", "\n "]))

    prefix = _random_case(draw, draw(st.sampled_from(_SPELLINGS[comparison.entity])))
    key = comparison.key
    quotes = ["`", '"'] + ([""] if _BARE_KEY_RE.fullmatch(key) else [])
    quote = draw(st.sampled_from(quotes))
    key = _quote(key, quote) if quote else key
    op = gap().join(_random_case(draw, part) for part in comparison.op.split())
    return f"{prefix}.{key}{gap()}{op}{gap()}{_format_value(draw, comparison.value)}".rstrip()


def _format_value(draw: st.DrawFn, value: float | str | tuple[str, ...] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _quote(value, draw(st.sampled_from(["'", '"'])))
    return "(" + ", ".join(_quote(item, draw(st.sampled_from(["'", '"']))) for item in value) + ")"


@given(st.data(), st.lists(_comparisons(), min_size=1, max_size=5))
def test_formatted_comparisons_parse_back(data: st.DataObject, expected: list[Comparison]) -> None:
    parts = [data.draw(_formatted(comparison)) for comparison in expected]
    joiners = [data.draw(st.sampled_from([" AND ", " and ", "\nAnd\t"])) for _ in parts[1:]]
    text = parts[0] + "".join(
        joiner + part for joiner, part in zip(joiners, parts[1:], strict=True)
    )
    positions = [0]
    for joiner, part in zip(joiners, parts, strict=False):
        positions.append(positions[-1] + len(part) + len(joiner))
    parsed = parse_filter(text)
    assert parsed == [replace(c, position=p) for c, p in zip(expected, positions, strict=True)]


_FRAGMENTS = st.sampled_from(
    ["metrics.a", "params.`x y`", 'tags."t', "attr.status", "attributes.nope", "datasets.name",
     "foo.bar", "metrics", "=", "!=", "<", ">=", "<>", "~", "LIKE", "ilike", "IN", "NOT", "IS",
     "NULL", "AND", "OR", "(", ")", ",", "'v'", '"w"', "'", '"', "`", "\\", "1", "-2.5e3",
     "1e999", ".", " ", "\n", "é"]
)  # fmt: skip


@given(st.one_of(st.text(), st.lists(_FRAGMENTS).map("".join), st.lists(_FRAGMENTS).map(" ".join)))
def test_any_text_parses_or_fails_with_a_position_inside_it(text: str) -> None:
    try:
        parse_filter(text)
    except FilterSyntaxError as error:
        caught: FilterSyntaxError | None = error
    else:
        caught = None
    if caught is not None:
        assert 0 <= caught.position <= len(text)
        assert str(caught).endswith(f" at position {caught.position}")


@given(st.lists(st.one_of(st.text(), st.lists(_FRAGMENTS).map(" ".join)), max_size=3))
def test_any_order_by_parses_or_fails_with_a_position_inside_its_item(items: list[str]) -> None:
    try:
        parse_order_by(items)
    except FilterSyntaxError as error:
        caught: FilterSyntaxError | None = error
    else:
        caught = None
    if caught is not None:
        index = int(caught.message.removeprefix("order_by[").split("]")[0])
        assert 0 <= caught.position <= len(items[index])

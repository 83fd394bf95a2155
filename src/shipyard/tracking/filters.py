"""The run-search filter and order_by languages of MLflow's ``search_runs``, parsed to plain data.

A filter is a conjunction of comparisons between an entity-prefixed key and a literal::

    metrics.auc > 0.9 AND params.model = 'xgboost' AND tags."mlflow.runName" LIKE 'base%'
    attributes.status IN ('FINISHED', 'FAILED') AND metrics.`val loss` IS NOT NULL

and an order_by item is an identifier with an optional direction: ``metrics.auc DESC``.

Turning the result into SQL is the query layer's job. Deciding what the text means happens here,
before any database is involved, so that every mistake is reported with the character offset a
client can point at, and so that the query layer only ever sees well-typed comparisons.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ATTRIBUTES",
    "DATASET_KEYS",
    "MAX_COMPARISONS",
    "MAX_FILTER_LENGTH",
    "NUMERIC_ATTRIBUTES",
    "Comparison",
    "Entity",
    "FilterSyntaxError",
    "OrderKey",
    "parse_filter",
    "parse_order_by",
]

Entity = Literal["metric", "param", "tag", "attribute", "dataset"]

MAX_FILTER_LENGTH = 10_000
MAX_COMPARISONS = 100

ATTRIBUTES: frozenset[str] = frozenset(
    {
        "run_id",
        "run_name",
        "status",
        "start_time",
        "end_time",
        "user_id",
        "artifact_uri",
        "lifecycle_stage",
        "experiment_id",
    }
)
NUMERIC_ATTRIBUTES: frozenset[str] = frozenset({"start_time", "end_time"})
DATASET_KEYS: frozenset[str] = frozenset({"name", "digest", "context"})

# The spellings MLflow clients and its UI send for the same attributes.
_ATTRIBUTE_ALIASES = {
    "runName": "run_name",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
    "created": "start_time",
    "Created": "start_time",
}
_PREFIXES: dict[str, Entity] = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
_PLURAL: dict[Entity, str] = {
    "metric": "metrics",
    "param": "params",
    "tag": "tags",
    "attribute": "attributes",
    "dataset": "datasets",
}

_OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN")
_NULL_TESTS = ("IS NULL", "IS NOT NULL")
_NUMBER_OPS = frozenset(_OPERATORS[:6])
_STRING_OPS = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "IS", "NULL", "ASC", "DESC"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<string>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")
    | (?P<unterminated>['"])
    | (?P<op>[<>=!]+)
    | (?P<punct>[(),])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_BARE_KEY = re.compile(r"[\w.\-/]*")
_QUOTED_KEY = {
    "`": re.compile(r"`(?:\\.|[^`\\])*`", re.DOTALL),
    '"': re.compile(r'"(?:\\.|[^"\\])*"', re.DOTALL),
}


class FilterSyntaxError(ValueError):
    """A filter or order_by that cannot be parsed; ``position`` is a 0-based offset into it.

    The position travels separately from the message so an API can underline the offending
    character instead of making the user count.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position

    def __reduce__(self) -> tuple[type[FilterSyntaxError], tuple[str, int]]:
        return type(self), (self.message, self.position)


@dataclass(frozen=True)
class Comparison:
    """One ``entity.key op value`` term; ``value`` is already of the type the key compares with."""

    entity: Entity
    key: str
    op: str
    value: float | str | tuple[str, ...] | None
    position: int


@dataclass(frozen=True)
class OrderKey:
    entity: Entity
    key: str
    ascending: bool


def parse_filter(text: str | None) -> list[Comparison]:
    """The comparisons of an AND-only filter; an absent or blank filter matches every run.

    Raises FilterSyntaxError, and nothing else, for any text it does not accept.
    """
    if text is None:
        return []
    if len(text) > MAX_FILTER_LENGTH:
        message = f"filter is longer than {MAX_FILTER_LENGTH} characters"
        raise FilterSyntaxError(message, MAX_FILTER_LENGTH)
    return _Parser(text).filter()


def parse_order_by(items: Sequence[str] | None) -> list[OrderKey]:
    """The sort keys of MLflow's ``order_by`` list, most significant first.

    Error positions are relative to the item, so the message names the item's index. A lone
    string is taken as one item rather than as a sequence of one-character items.
    """
    if items is None:
        return []
    keys: list[OrderKey] = []
    for index, item in enumerate([items] if isinstance(items, str) else items):
        try:
            keys.append(_parse_order_item(item))
        except FilterSyntaxError as error:
            raise FilterSyntaxError(f"order_by[{index}]: {error.message}", error.position) from None
    return keys


def _parse_order_item(item: str) -> OrderKey:
    if len(item) > MAX_FILTER_LENGTH:
        message = f"order_by item is longer than {MAX_FILTER_LENGTH} characters"
        raise FilterSyntaxError(message, MAX_FILTER_LENGTH)
    return _Parser(item).order_key()


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "key", "number", "string", "op", "(", ")", ",", "other" or "end"
    text: str
    position: int
    value: str | float = ""


def _tokenize(text: str) -> list[_Token]:
    """Lex everything up front: the only context the lexer needs is "a key follows ``prefix.``"."""
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        assert match is not None  # the `other` alternative matches any character
        kind, raw = match.lastgroup or "other", match.group()
        if kind == "unterminated":
            raise FilterSyntaxError("unterminated string", position)
        if kind != "space":
            tokens.append(_make_token(kind, raw, position))
        position = match.end()
        if kind == "word" and text.startswith(".", position):
            key, position = _lex_key(text, position + 1, raw)
            tokens.append(key)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _make_token(kind: str, raw: str, position: int) -> _Token:
    if kind == "number":
        number = float(raw)
        if not math.isfinite(number):
            raise FilterSyntaxError(f"number {raw} is out of range", position)
        return _Token(kind, raw, position, number)
    if kind == "string":
        return _Token(kind, raw, position, _unescape(raw[1:-1], raw[0]))
    return _Token(raw if kind == "punct" else kind, raw, position)


def _lex_key(text: str, start: int, prefix: str) -> tuple[_Token, int]:
    """Keys that are not plain words (spaces, quotes) can be written in backticks or "quotes"."""
    quote = text[start : start + 1]
    match = _QUOTED_KEY.get(quote, _BARE_KEY).match(text, start)
    if match is None:
        raise FilterSyntaxError("unterminated quoted key", start)
    raw = match.group()
    key = _unescape(raw[1:-1], quote) if quote in _QUOTED_KEY else raw
    if not key:
        raise FilterSyntaxError(f"expected a key after '{prefix}.'", start)
    return _Token("key", raw, start, key), match.end()


def _unescape(body: str, quote: str) -> str:
    """Only ``\\<quote>`` and ``\\\\`` are escapes: other backslashes reach LIKE patterns intact."""
    return re.sub(r"\\([\\" + quote + "])", r"\1", body)


def _canonical_key(entity: Entity, token: _Token) -> str:
    key = str(token.value)
    if entity == "attribute":
        key = _ATTRIBUTE_ALIASES.get(key, key)
        if key not in ATTRIBUTES:
            allowed = ", ".join(sorted(ATTRIBUTES))
            raise FilterSyntaxError(
                f"unknown attribute {key!r}; expected one of {allowed}", token.position
            )
    if entity == "dataset" and key not in DATASET_KEYS:
        allowed = ", ".join(sorted(DATASET_KEYS))
        raise FilterSyntaxError(
            f"unknown dataset field {key!r}; expected one of {allowed}", token.position
        )
    return key


def _is_numeric(entity: Entity, key: str) -> bool:
    return entity == "metric" or (entity == "attribute" and key in NUMERIC_ATTRIBUTES)


def _allowed_operators(entity: Entity, key: str) -> tuple[str, ...]:
    """MLflow's operator sets, plus IN/NOT IN for every string key and IS NULL for metrics."""
    if _is_numeric(entity, key):
        numeric = tuple(op for op in _OPERATORS if op in _NUMBER_OPS)
        return numeric + _NULL_TESTS if entity == "metric" else numeric
    strings = tuple(op for op in _OPERATORS if op in _STRING_OPS)
    return strings + _NULL_TESTS if entity in ("param", "tag") else strings


def _display(entity: Entity, key: str) -> str:
    return f"{_PLURAL[entity]}.{key if _BARE_KEY.fullmatch(key) else f'`{key}`'}"


class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._index = 0

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _peek_word(self) -> str:
        token = self._peek()
        return token.text.upper() if token.kind == "word" else ""

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        self._index = min(self._index + 1, len(self._tokens) - 1)  # `end` repeats forever
        return token

    def _expect_word(self, word: str) -> None:
        token = self._advance()
        if token.kind != "word" or token.text.upper() != word:
            raise FilterSyntaxError(f"expected {word}{_got(token)}", token.position)

    def filter(self) -> list[Comparison]:
        if self._peek().kind == "end":
            return []
        comparisons = [self._comparison()]
        while (token := self._advance()).kind != "end":
            word = token.text.upper() if token.kind == "word" else ""
            if word == "OR":
                message = "OR is not supported; combine conditions with AND"
                raise FilterSyntaxError(message, token.position)
            if word != "AND":
                message = f"unexpected {token.text!r}; join comparisons with AND"
                raise FilterSyntaxError(message, token.position)
            comparisons.append(self._comparison())
            if len(comparisons) > MAX_COMPARISONS:
                message = f"filter has more than {MAX_COMPARISONS} comparisons"
                raise FilterSyntaxError(message, comparisons[-1].position)
        return comparisons

    def _comparison(self) -> Comparison:
        start = self._peek().position
        entity, key = self._identifier("a comparison")
        op_position = self._peek().position
        op = self._operator()
        name = _display(entity, key)
        allowed = _allowed_operators(entity, key)
        if op not in allowed:
            message = f"{op} is not supported for {name}; use one of {', '.join(allowed)}"
            raise FilterSyntaxError(message, op_position)
        value = self._value(op, _is_numeric(entity, key), name)
        return Comparison(entity, key, op, value, start)

    def _identifier(self, expected: str) -> tuple[Entity, str]:
        token = self._advance()
        has_key = self._peek().kind == "key"
        if token.kind != "word" or (not has_key and token.text.upper() in _KEYWORDS):
            raise FilterSyntaxError(f"expected {expected}{_got(token)}", token.position)
        entity = _PREFIXES.get(token.text.lower())
        if entity is None:
            raise FilterSyntaxError(f"unknown prefix {token.text!r}", token.position)
        if not has_key:
            message = f"expected '.' and a key after {token.text!r}"
            raise FilterSyntaxError(message, token.position + len(token.text))
        return entity, _canonical_key(entity, self._advance())

    def _operator(self) -> str:
        token = self._advance()
        word = token.text.upper() if token.kind == "word" else ""
        if (token.kind == "op" and token.text in _NUMBER_OPS) or word in ("LIKE", "ILIKE", "IN"):
            return word or token.text
        if word == "NOT":
            self._expect_word("IN")
            return "NOT IN"
        if word == "IS":
            return self._null_test()
        if token.kind == "end":
            raise FilterSyntaxError("expected an operator", token.position)
        raise FilterSyntaxError(f"unknown operator {token.text!r}", token.position)

    def _null_test(self) -> str:
        negated = self._peek_word() == "NOT"
        if negated:
            self._advance()
        self._expect_word("NULL")
        return "IS NOT NULL" if negated else "IS NULL"

    def _value(self, op: str, numeric: bool, name: str) -> float | str | tuple[str, ...] | None:
        if op in _NULL_TESTS:
            return None
        if op in ("IN", "NOT IN"):
            return self._string_list(op)
        token = self._advance()
        if token.kind == "end":
            raise FilterSyntaxError("expected a value", token.position)
        if numeric and token.kind == "number":
            return float(token.value)
        if not numeric and token.kind == "string":
            return str(token.value)
        expected = "a number" if numeric else "a quoted string"
        raise FilterSyntaxError(f"{name} must be compared with {expected}", token.position)

    def _string_list(self, op: str) -> tuple[str, ...]:
        token = self._advance()
        if token.kind != "(":
            message = f"{op} needs a parenthesised list of quoted strings"
            raise FilterSyntaxError(message, token.position)
        items = [self._list_item()]
        while (token := self._advance()).kind == ",":
            items.append(self._list_item())
        if token.kind != ")":
            raise FilterSyntaxError(f"expected ',' or ')'{_got(token)}", token.position)
        return tuple(items)

    def _list_item(self) -> str:
        token = self._advance()
        if token.kind != "string":
            raise FilterSyntaxError(f"expected a quoted string{_got(token)}", token.position)
        return str(token.value)

    def order_key(self) -> OrderKey:
        start = self._peek().position
        entity, key = self._identifier("an identifier")
        if entity == "dataset":
            raise FilterSyntaxError("cannot order by datasets", start)
        direction = self._peek_word()
        if direction in ("ASC", "DESC"):
            self._advance()
        token = self._advance()
        if token.kind != "end":
            expected = "the end" if direction in ("ASC", "DESC") else "ASC, DESC or the end"
            raise FilterSyntaxError(f"expected {expected}{_got(token)}", token.position)
        return OrderKey(entity, key, direction != "DESC")


def _got(token: _Token) -> str:
    return "" if token.kind == "end" else f", got {token.text!r}"

"""Field types of the tracks/ models, each naming what it expects in the words an error message quotes.

A leaf type wraps pydantic's validation so that any failure (wrong type or out of range) becomes one error,
"expected <what the field takes>", instead of pydantic's own wording. Rules between fields raise `rule`, whose
path can point anywhere in the catalog. `describe` turns pydantic's first error into the one line the CLI prints:
`tracks/presets.yml: presets.cpu.n_head: expected an integer >= 1, got 'x'`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, WrapValidator
from pydantic_core import ErrorDetails, PydanticCustomError


class Entry(BaseModel):
    """A mapping in tracks/: strict types (YAML's 4 is not the text '4'), no unknown keys, read-only."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def expect(what: str) -> WrapValidator:
    """Report any failure of the wrapped type as one error: expected `what`."""
    def wrap(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("expected", "expected {what}", {"what": what}) from None

    return WrapValidator(wrap)


def rule(message: str, path: str | None = None) -> PydanticCustomError:
    """A broken rule between fields; `path` (key.key) leads from the model the validator runs on to the key at
    fault (for the Catalog's rules, from the top: section.id.key)."""
    return PydanticCustomError("catalog_rule", "{message}", {"message": message, "path": path})


def _given(value: Any) -> Any:
    """Optional keys are left out, never written as null (Copier's Jinja would read the null)."""
    if value is None:
        raise PydanticCustomError("expected", "expected {what}", {"what": "a value (leave the key out instead)"})
    return value


def optional(annotation: Any) -> Any:
    """A field that may be left out (None on the model) but not given as null."""
    return Annotated[annotation | None, BeforeValidator(_given)]


def integer(lo: int) -> Any:
    return Annotated[int, Ge(lo), expect(f"an integer >= {lo}")]


def number(lo: float, hi: float = math.inf, lo_open: bool = False) -> Any:
    low = Gt(lo) if lo_open else Ge(lo)
    if hi == math.inf:
        what = f"a number {'>' if lo_open else '>='} {lo:g}"
    else:
        what = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    return Annotated[float, low, Le(hi), expect(what)]


def one_of(*options: str) -> Any:
    return Annotated[Literal[options], expect("one of " + ", ".join(options))]


def pattern(regex: str, what: str) -> Any:
    """Text that `regex` matches from its start (re.match)."""
    def check(value: str) -> str:
        if not re.match(regex, value):
            raise ValueError(what)
        return value

    return Annotated[str, AfterValidator(check), expect(what)]


Text = pattern(r"\s*\S", "a non-empty string")
Flag = Annotated[bool, expect("true or false")]
Names = Annotated[list[Text], expect("a list of names")]
TextList = Annotated[list[Text], MinLen(1), expect("a non-empty list of strings")]
Number = Annotated[float, expect("a number")]


def _path(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _message(error: ErrorDetails) -> tuple[tuple[int | str, ...], str]:
    """(where, what) of one pydantic error, in the catalog's words."""
    loc, kind, got = error["loc"], error["type"], error.get("input")
    if kind == "catalog_rule":
        path = (error.get("ctx") or {}).get("path")
        return loc + (tuple(path.split(".")) if path else ()), error["msg"]
    if kind == "missing":
        return loc[:-1], f"missing {'section' if len(loc) == 1 else 'field'} {loc[-1]!r}"
    if kind == "extra_forbidden":
        return loc[:-1], f"unknown field {loc[-1]!r}"
    if loc and loc[-1] == "[key]":
        return loc[:-2], f"key {got!r}: {error['msg']}"
    if kind in ("model_type", "dict_type"):
        return loc, f"expected a mapping, got {got!r}"
    if kind == "too_short":
        return loc, "expected at least one entry"
    if kind == "list_type":
        return loc, f"expected a list, got {got!r}"
    return loc, f"{error['msg']}, got {got!r}"


def describe(exc: ValidationError, files: dict[str, str]) -> str:
    """The first error as one line: the file of its section (files: section -> file), key path, message."""
    errors = exc.errors()
    loc, message = _message(errors[0])
    file = files.get(str(loc[0]), "tracks/") if loc else "tracks/"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{file}: {_path(loc) + ': ' if loc else ''}{message}{more}"

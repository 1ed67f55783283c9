"""Schema of tracks/checks.yml's `checks` section (the generated repository's `check` command), for catalog.py.

Field checks are callables with a docstring that the catalog's error messages quote; `cross_check` enforces the
rules between a check and the other sections: its roadmap step exists, its feature (if any) is a true/false track
feature, per-track values name every track,
`from_catalog` setup values resolve, and the figures' kinds of expectation are consistent.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from generator.errors import UserError

Check = Callable[[Any], bool]
BASES = ("formula", "measured", "reference", "estimate")
_FIELDS = {"label", "basis", "reason", "expected", "tolerance", "relative", "formula", "at_most", "at_least", "shown"}


def _doc(text: str) -> Callable[[Check], Check]:
    def wrap(check: Check) -> Check:
        check.__doc__ = text
        return check

    return wrap


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _per_track(v: Any) -> bool:
    """A number, or a mapping of track id to a number."""
    return _number(v) or (isinstance(v, dict) and bool(v) and all(_number(x) for x in v.values()))


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _figure(f: Any) -> bool:
    if not isinstance(f, dict) or set(f) - _FIELDS or not {"label", "basis", "reason"} <= set(f):
        return False
    kinds = [k for k in ("expected", "at_most", "at_least", "shown") if k in f]
    if "formula" in f and "shown" not in f:
        kinds.append("formula")
    tolerance_ok = ("tolerance" in f) == bool({"expected", "formula"} & set(kinds))
    return (len(kinds) == 1 and _text(f["label"]) and f["basis"] in BASES and _text(f["reason"]) and tolerance_ok
            and all(_per_track(f[k]) for k in ("expected", "at_most", "at_least") if k in f)
            and (_number(f.get("tolerance", 0)) and f.get("tolerance", 0) >= 0)
            and isinstance(f.get("relative", False), bool) and f.get("shown", True) is True
            and (f["basis"] == "estimate") == ("shown" in f) and (_text(f["formula"]) if "formula" in f else True))


@_doc("a mapping of figure names to {label, basis: " + " | ".join(BASES) + ", reason, and one of: expected (a "
      "number or one per track) + tolerance, formula + tolerance, at_most, at_least, shown: true}")
def figures(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(re.fullmatch(r"\w+", k) and _figure(f) for k, f in v.items())


@_doc("a mapping of names to numbers, strings, lists of numbers, null, or 'from_derived NAME' / "
      "'from_catalog SECTION.ID.KEY'")
def setup(v: Any) -> bool:
    def ok(x: Any) -> bool:
        return x is None or _number(x) or isinstance(x, str) or (isinstance(x, list) and all(_number(y) for y in x))

    return isinstance(v, dict) and all(re.fullmatch(r"\w+", k) and ok(x) for k, x in v.items())


@_doc("PACKAGE/<file> and the function(s) to look at")
def look_at(v: Any) -> bool:
    return _text(v) and "PACKAGE/" in v


@_doc("a whole number of seconds, at least 1")
def seconds(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@_doc("true or false")
def flag(v: Any) -> bool:
    return isinstance(v, bool)


def check_schema(text: Check) -> tuple[dict[str, Check], dict[str, Check]]:
    """(required, optional) fields of a check, for catalog.SCHEMA; `text` is the catalog's own check."""
    required = {"step": text, "title": text, "observe": text, "fast": flag, "seconds": seconds, "look_at": look_at,
                "figures": figures}
    return required, {"setup": setup, "feature": text, "layer": text}


def _fail(where: str, message: str) -> UserError:
    return UserError(f"tracks data checks.yml: checks.{where}: {message}")


def cross_check(catalog: dict[str, Any]) -> None:
    """Rules between the checks and the steps, tracks and other sections."""
    tracks = set(catalog["tracks"])
    switches = {k for k, v in next(iter(catalog["tracks"].values()))["features"].items() if isinstance(v, bool)}
    for name, c in catalog["checks"].items():
        if c["step"] not in catalog["steps"]:
            raise _fail(f"{name}.step", f"unknown roadmap step {c['step']!r}")
        if "layer" in c and c["layer"] not in catalog["layers"]:
            raise _fail(f"{name}.layer", f"not a layer of tracks/layers.yml (known: {', '.join(catalog['layers'])})")
        if "feature" in c and c["feature"] not in switches:
            raise _fail(f"{name}.feature", f"not a true/false track feature (known: {', '.join(sorted(switches))})")
        for fname, f in c["figures"].items():
            for key in ("expected", "at_most", "at_least"):
                if isinstance(f.get(key), dict) and set(f[key]) != tracks:
                    raise _fail(f"{name}.figures.{fname}.{key}", f"a per-track value needs each of {', '.join(sorted(tracks))}")
        for key, v in c.get("setup", {}).items():
            if isinstance(v, str) and v.startswith("from_catalog "):
                node: Any = catalog
                for part in v.split(" ", 1)[1].split("."):
                    if not isinstance(node, dict) or part not in node:
                        raise _fail(f"{name}.setup.{key}", f"{v!r} does not resolve (no {part!r})")
                    node = node[part]

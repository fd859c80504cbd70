"""Strict numbers for recipes and params models: a TOML bool is not a number, nor is a string.

pydantic's lax mode reads ``n_blocks = true`` as 1 and ``"5"`` as 5. Its strict mode is too strict for
TOML, which hands over lists where a field is a tuple and strings where it is a path or a literal, so
:class:`StrictModel` checks only what lax mode gets wrong: before pydantic converts a field, the raw
value is held against the field's annotation (through unions, tuples, lists, sets and tables) and a
bool, number or string in the place of another of the three is refused. What is left (an integral
float such as 5.0 for an int, a fraction for an int, a list for a tuple) stays pydantic's to judge.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

#: The scalar types checked, and pydantic's own words for each.
_EXPECTED: dict[type, str] = {
    bool: "Input should be a valid boolean",
    int: "Input should be a valid integer",
    float: "Input should be a valid number",
    str: "Input should be a valid string",
}
_UNIONS = (Union, types.UnionType)
_ITEMS = (list, tuple, set, frozenset, Sequence, AbstractSet)
_TABLES = (dict, Mapping)

#: Where in a value the problem is (list indices, table keys), and what it is.
Objection = tuple[tuple[int | str, ...], str]


def _got(value: Any) -> str | None:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return None


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _scalar(expected: type, value: Any) -> str | None:
    got = _got(value)
    if got is None:
        return None  # a list, a table, None...: not a scalar, pydantic's to judge
    wanted = {bool: "a boolean", str: "a string"}.get(expected, "a number")
    # an int for a float, an integral float for an int, a fraction for an int: pydantic's to judge
    return None if got == wanted else f"{_EXPECTED[expected]}, got {got}"


def _takes(annotation: Any, value: Any) -> bool:
    """Could this arm of a union hold ``value`` at all? Strings, lists and tables may go to any arm."""
    if isinstance(value, str) or _got(value) is None:
        return True
    annotation = _unwrap(annotation)
    if annotation in _EXPECTED or annotation is Any or annotation is object:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return any(type(choice) is type(value) and choice == value for choice in get_args(annotation))
    if origin in _UNIONS:
        return any(_takes(arm, value) for arm in get_args(annotation))
    return False


def objection(annotation: Any, value: Any) -> Objection | None:
    """Why ``value`` (raw TOML data) does not fit ``annotation`` as a number, bool or string; else None."""
    annotation = _unwrap(annotation)
    if annotation in _EXPECTED:
        problem = _scalar(annotation, value)
        return ((), problem) if problem else None
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in _UNIONS:
        if value is None:
            return None
        found = None
        for arm in args:
            if arm is type(None):
                continue
            problem = objection(arm, value)
            if problem is None and _takes(arm, value):
                return None
            found = found or problem
        return found
    if origin in _ITEMS and isinstance(value, (list, tuple)) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            item_types = list(args)
        else:
            item_types = [args[0]] * len(value)
        for index, (item_type, item) in enumerate(zip(item_types, value)):
            problem = objection(item_type, item)
            if problem:
                return (index, *problem[0]), problem[1]
    if origin in _TABLES and isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            problem = objection(args[1], item)
            if problem:
                return (key, *problem[0]), problem[1]
    return None


class StrictModel(BaseModel):
    """A pydantic model whose numbers, bools and strings are not converted into one another."""

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        problem = objection(field.annotation, value) if field is not None else None
        if problem:
            where, message = problem
            # ``at`` continues the error's location into the value (``betas`` -> ``betas.1``)
            raise PydanticCustomError("strict_type", message, {"at": where})
        return value

"""One-line functions compiled once from a declaration, for the hot paths.

A keyword call or a tuple spelt out in source runs several times faster than the
same built at run time (``**kwargs`` from a dict, ``attrgetter`` on a Struct), so
the record builders and wire forms are generated once per declaration, as
``dataclasses`` generates ``__init__``. The text is made of attribute names and
indices taken from the declarations, never from input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def generated(
    name: str, argument: str, expression: str, namespace: Mapping[str, object]
) -> Callable[[Any], Any]:
    """``def name(argument): return expression``, the expression's names in ``namespace``."""
    return generated_body(name, argument, [f"return {expression}"], namespace)


def generated_body(
    name: str, arguments: str, body: list[str], namespace: Mapping[str, object]
) -> Callable[..., Any]:
    """``def name(arguments):`` with the statements of ``body``, one per line at the
    function's level (lines inside a block carry their extra indentation)."""
    scope = dict(namespace)
    text = "".join(f"    {line}\n" for line in body)
    exec(f"def {name}({arguments}):\n{text}", scope)  # noqa: S102
    function: Callable[..., Any] = scope[name]  # type: ignore[assignment]
    return function

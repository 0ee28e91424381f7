"""Exact decimal conversion of JSON numbers and numeric strings."""

from __future__ import annotations

import math
import re
from decimal import Decimal

_NUMERIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?")
_MAX_NUMERIC_TEXT = 64


def to_decimal(value: object) -> Decimal | None:
    """``value`` as a ``Decimal`` without float rounding, or ``None`` if it is not numeric.

    Accepts ``int`` (not ``bool``), ``Decimal`` (what the JSON decoder yields for
    JSON numbers with a fraction or exponent), ``float`` (in-process callers; its
    shortest repr is used) and strings holding a plain decimal number such as
    ``"71749.0"``. The result may be NaN or infinite only for ``Decimal``/``float``
    inputs; callers check :meth:`Decimal.is_finite`.
    """
    result: Decimal | None = None
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value)) if math.isfinite(value) else Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        if len(text) <= _MAX_NUMERIC_TEXT and _NUMERIC.fullmatch(text):
            result = Decimal(text)  # the pattern only admits valid decimal literals
    return result

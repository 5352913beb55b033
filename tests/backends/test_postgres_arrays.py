"""The array literals the PostgreSQL store sends metric columns in (one text parameter per
column): whatever the strings and numbers, the server reads back exactly what was sent."""

from __future__ import annotations

import math
import random
import sys

import asyncpg
import pytest
from pgtools import admin_dsn

from backends.metadata.dialects.postgres import _number_array, _text_array


async def test_array_literals_round_trip() -> None:
    rng = random.Random(3)
    texts = ["", "plain", "with space", 'quo"te', "back\\slash", "\\\"", "{brace}", "a,b",
             "NULL", "null", "ünïcødé ✓", "  padded  ", "tab\there", "new\nline", "'single'"]
    texts += ["".join(rng.choice('ab"\\{},  NUL') for _ in range(rng.randint(0, 12)))
              for _ in range(200)]
    floats = [0.0, -0.0, 1.5, -2.25, 1e-300, 5e-324, sys.float_info.max, -sys.float_info.max,
              0.1, 1 / 3, 123456789.123456789] + [rng.uniform(-1e9, 1e9) for _ in range(200)]
    ints = [0, 1, -1, 2**63 - 1, -(2**63)] + [rng.randint(-(2**62), 2**62) for _ in range(200)]
    conn = await asyncpg.connect(admin_dsn())
    try:
        got_texts = await conn.fetchval("SELECT $1::text::text[]", _text_array(texts))
        got_floats = await conn.fetchval("SELECT $1::text::float8[]", _number_array(floats))
        got_ints = await conn.fetchval("SELECT $1::text::int8[]", _number_array(ints))
        empty = await conn.fetchval("SELECT $1::text::int8[]", _number_array([]))
    finally:
        await conn.close()
    assert got_texts == texts
    assert got_floats == floats
    assert [math.copysign(1, f) for f in got_floats] == [math.copysign(1, f) for f in floats]
    assert got_ints == ints
    assert empty == []


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_floats_never_reach_the_literal(value: float) -> None:
    # stored_value maps NaN to (0, flag) and ±inf to ±max before this is called.
    from backends.metadata.sql.tracking import stored_value

    stored, _ = stored_value(value)
    assert math.isfinite(stored)

"""The commands' JSON printer writes what json.dumps(indent=2) writes."""

from __future__ import annotations

import json
import re

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from kvmrt.commands import jsontext

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text())
KEYS = st.text() | st.integers() | st.booleans() | st.none()
VALUES = st.recursive(
    SCALARS,
    lambda inner: (st.lists(inner) | st.lists(inner).map(tuple)
                   | st.dictionaries(st.text(), inner) | st.dictionaries(KEYS, inner)),
    max_leaves=40)


@settings(max_examples=500)
@given(VALUES)
def test_same_text_as_json_dumps_indent_2(value):
    assert jsontext.dumps(value) == json.dumps(value, indent=2)


def test_what_the_commands_print():
    value = [{"uuid": "0000", "name": "rt\u00e9 \"x\"", "rt": True, "irq_cpu": None,
              "cpus": list(range(5)), "vcpu_cpus": [[1], [2], []], "nested": {},
              "top": (1, 4, 1)}, {}, [], -7]
    assert jsontext.dumps(value) == json.dumps(value, indent=2)


@pytest.mark.parametrize("value", [{1, 2}, [object()]])
def test_not_json_fails_as_json_dumps_does(value):
    with pytest.raises(TypeError) as expected:
        json.dumps(value, indent=2)
    with pytest.raises(TypeError, match=re.escape(str(expected.value))):
        jsontext.dumps(value)

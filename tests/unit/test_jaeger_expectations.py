"""The property tests' oracle compares JSON tags by value and keeps types apart."""

from __future__ import annotations

import pytest

from tests.jaeger_expectations import JsonOf

VALUE = (1.0, True, None, b"\x01", {"a": float("inf"), "b": -7}, ["x"])


def test_json_of_matches_the_mapping_rendering() -> None:
    assert JsonOf(VALUE) == '[1,true,null,"AQ==",{"a":"+Inf","b":-7},["x"]]'
    assert JsonOf(VALUE) == '[1.0,true,null,"AQ==",{"a":"+Inf","b":-7},["x"]]'  # numbers by value
    assert JsonOf(("a b", {"k v": " "})) == '["a b",{"k v":" "}]'  # spaces inside strings are data


@pytest.mark.parametrize("wrong", [
    '[1,1,null,"AQ==",{"a":"+Inf","b":-7},["x"]]',  # true is not 1
    '[1,true,"",  "AQ==",{"a":"+Inf","b":-7},["x"]]',  # null is not ""
    '[1,true,null,"AQ",{"a":"+Inf","b":-7},["x"]]',  # not the base64 of the bytes
    '[1,true,null,"AQ==",{"a":"-Inf","b":-7},["x"]]',
    '[1,true,null,"AQ==",{"a":"+Inf","b":-7.5},["x"]]',
    '[1,true,null,"AQ==",{"a":"+Inf"},["x"]]',  # a key missing
    '[1,true,null,"AQ==",{"a":"+Inf","b":-7},"x"]',  # not an array
    '[1,true,null,"AQ==",{"a":"+Inf","b":-7},["x"],2]',  # one element too many
    "[1,true,null,",  # not JSON
    '[1, true,null,"AQ==",{"a":"+Inf","b":-7},["x"]]',  # not compact
    '[1,true,null,"AQ==",{"b":-7,"a":"+Inf"},["x"]]',  # object keys not sorted
])
def test_json_of_tells_a_wrong_rendering(wrong: str) -> None:
    assert JsonOf(VALUE) != wrong

"""The request codec in-process: orjson parsing, the stdlib's messages, range checks, encoding.

Pathological bodies are parsed in a child process, so a crash of the JSON parser (orjson 3.8
segfaulted on deep nesting) fails a test instead of taking pytest down with it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mlops_sessions.server.codec import (
    RequestError,
    as_model_input,
    decode_json,
    encode_json,
    encode_predict,
    parse_predict,
    to_array,
)
from mlops_sessions.server.runtime import Signature, TensorInfo

PIXELS = TensorInfo("pixels", np.dtype("float32"), (None, 4))
SIGNATURE = Signature(
    {"pixels": PIXELS}, {"output_0": TensorInfo("output_0", PIXELS.dtype, (None, 2))}
)


def _error(body: bytes) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_predict(body, SIGNATURE, "serving_default")
    return caught.value


def test_valid_rows_become_model_inputs_of_the_signature_dtype() -> None:
    parsed = parse_predict(
        b'{"instances": [[1, 2.5, 3, 4], [0, 0, 0, 1e38]]}', SIGNATURE, "serving_default"
    )
    assert parsed.rows == 2 and not parsed.columnar
    (array,) = parsed.inputs.values()
    assert array.shape == (2, 4)
    single = as_model_input([array], PIXELS)
    stacked = as_model_input([array, np.array([[1, 2, 3, 4]])], PIXELS)
    assert single.dtype == stacked.dtype == np.float32
    np.testing.assert_array_equal(single[0], [1, 2.5, 3, 4])
    np.testing.assert_array_equal(stacked[2], [1, 2, 3, 4])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"instances": [[NaN, 1, 2, 3]]}', "finite numbers"),
        (b'{"instances": [[Infinity, 1, 2, 3]]}', "finite numbers"),
        (b'{"instances": [[1e999, 1, 2, 3]]}', "out of range"),  # the stdlib reads inf
        (b'{"instances": [[3.5e38, 1, 2, 3]]}', "out of range for float32"),
        (b'{"instances": [[-3.5e38, 1, 2, 3]]}', "out of range for float32"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"instances": [[1, 2, 3, 4]]} x', "invalid JSON at line 1"),
        (b'{"instances": [[1, 2, 3, 4]], "signature_name": "\\ud800"}', "unknown signature_name"),
        (b'{"instances": [[true, false, true, false]]}', "expected numbers"),
        (b'{"instances": [["1", "2", "3", "4"]]}', "got strings"),
        (b'{"instances": [[null, 1, 2, 3]]}', "mixed or non-numeric"),
    ],
)
def test_mistakes_keep_their_messages(body: bytes, needle: str) -> None:
    error = _error(body)
    assert error.status == 400
    assert needle in error.message


def test_largest_float32_is_accepted_and_the_next_value_up_is_not() -> None:
    largest = float(np.finfo(np.float32).max)
    ok = as_model_input([to_array([[largest, -largest, 0.0, 1.0]], PIXELS, "x", None)], PIXELS)
    assert np.isfinite(ok).all()
    # Halfway to the next power of two rounds to infinity in float32: rejected.
    with pytest.raises(RequestError, match="overflows"):
        to_array([[PIXELS.float_limit, 0.0, 0.0, 0.0]], PIXELS, "x", None)


def test_integers_past_float16_range_are_rejected() -> None:
    half = TensorInfo("h", np.dtype("float16"), (None, 1))
    assert as_model_input([to_array([[65504]], half, "x", None)], half).dtype == np.float16
    with pytest.raises(RequestError, match="out of range for float16"):
        to_array([[65520]], half, "x", None)


def test_integer_inputs_still_reject_floats_and_overflow() -> None:
    ids = TensorInfo("ids", np.dtype("int32"), (None, 2))
    assert to_array([[1, 2]], ids, "x", None).dtype == np.int32
    with pytest.raises(RequestError, match="expected integers"):
        to_array([[1.5, 2]], ids, "x", None)
    with pytest.raises(RequestError, match="out of range for int32"):
        to_array([[2**40, 2]], ids, "x", None)


def test_non_finite_outputs_are_written_like_tf_serving() -> None:
    outputs = {"output_0": np.array([[math.nan, math.inf], [-math.inf, 0.5]], np.float32)}
    assert encode_predict(outputs, columnar=False) == (
        b'{"predictions":[[NaN,Infinity],[-Infinity,0.5]]}'
    )
    assert json.loads(encode_predict({"y": np.array([[0.25]], np.float32)}, columnar=True)) == {
        "outputs": [[0.25]]
    }


def test_strings_with_lone_surrogates_are_escaped_not_refused() -> None:
    assert json.loads(encode_json({"error": "bad \udcff name"})) == {"error": "bad \udcff name"}


def test_decode_json_matches_the_standard_library_on_valid_documents() -> None:
    document = {"instances": [[0.1, -2, 3e-5, 12345678901234567890]], "k": [True, None, "s"]}
    text = json.dumps(document).encode()
    assert decode_json(text) == json.loads(text)


PATHOLOGICAL = {
    "2 MB of [": "b'[' * (2 * 1024 * 1024)",
    "2 MB of balanced [ ]": "b'[' * (1024 * 1024) + b']' * (1024 * 1024)",
    "nested objects": "b'{\"a\": ' * 300_000 + b'1' + b'}' * 300_000",
    "nesting inside instances": "b'{\"instances\": ' + b'[' * 1_000_000 + b']' * 1_000_000 + b'}'",
    "rows of nested lists": "b'{\"instances\": [' + b'[[[[[[[[1]]]]]]]],' * 100_000 + b'[1]]}'",
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_bodies_are_a_400_not_a_crash(name: str) -> None:
    script = textwrap.dedent(
        f"""
        import numpy as np
        from mlops_sessions.server.codec import RequestError, parse_predict
        from mlops_sessions.server.runtime import Signature, TensorInfo
        info = TensorInfo("pixels", np.dtype("float32"), (None, 4))
        body = {PATHOLOGICAL[name]}
        try:
            parse_predict(body, Signature({{"pixels": info}}, {{}}), "serving_default")
        except RequestError as exc:
            print(exc.status, exc.message[:200])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"parser died with {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.startswith("400 "), done.stdout + done.stderr[-2000:]

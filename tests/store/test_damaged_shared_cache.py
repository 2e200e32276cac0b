"""A damaged cache pointer on the shared store (store.remote) is a warned miss, not a stop.

The train cache pointer of a key is put on a real S3 API server (moto) as garbage, an empty
object, a JSON list and JSON without ``run_id``; ``mlops train --dry-run`` of a checkout that
does not have the run must warn once naming the object, plan a training (a miss), exit 0,
and delete the damaged pointer so the next complete run can share a good one.
(The local caches: tests/robustness/test_damaged_caches.py.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.store.conftest import Bucket, Checkout

DAMAGED = {
    "not JSON": b"\x00\xff{garbage",
    "empty": b"",
    "a JSON list": b"[1, 2]",
    "no run_id": b'{"schema": 1, "key": "x"}',
}


@pytest.mark.parametrize("how", list(DAMAGED))
def test_a_damaged_shared_train_pointer_is_a_warned_miss(
    how: str, checkout: Callable[..., Checkout], bucket: Bucket
) -> None:
    laptop = checkout("laptop")
    code, plan, err = laptop.mlops("train", "--dry-run")
    assert code == 0, err
    key = plan["plans"][0]["key"]
    pointer = f"cache/train/{key}.json"
    bucket.client.put_object(Bucket=bucket.name, Key=f"team/digits/{pointer}", Body=DAMAGED[how])

    code, plan, err = laptop.mlops("train", "--dry-run")
    assert code == 0, err
    assert plan["plans"][0]["cached"] is False
    warned = [line for line in err.splitlines() if line.startswith("warning: ignoring the damaged")]
    assert len(warned) == 1 and f"{bucket.url}/{pointer}" in warned[0], err
    assert pointer not in bucket.objects("cache/train/")

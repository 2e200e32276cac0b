"""Server lifecycle under load: graceful SIGTERM drain, overload 503, model selection.

Each test starts its own real server process, because each ends it or configures it
differently. Loads are bounded in request count and time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from mlops_sessions.records.store import Store
from tests.conftest import require_real

MODEL = "tiny"
PREDICT = f"/v1/models/{MODEL}:predict"
Rows = Callable[[int, int], np.ndarray]


async def _load(
    url: str,
    total: int,
    concurrency: int,
    body: dict[str, Any],
    on_progress: Callable[[int], None] | None = None,
) -> tuple[Counter[int], list[str]]:
    """POST ``total`` requests with ``concurrency`` clients; count status codes and failures."""
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    done = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def client() -> None:
            nonlocal done
            while not queue.empty():
                queue.get_nowait()
                try:
                    async with session.post(url + PREDICT, json=body) as response:
                        await response.read()
                        statuses[response.status] += 1
                        if response.status == 503:
                            failures.append(
                                f"503 Retry-After={response.headers.get('Retry-After')}"
                            )
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                done += 1
                if on_progress is not None:
                    on_progress(done)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return statuses, failures


@pytest.mark.slow
def test_sigterm_during_load_loses_no_request(
    tmp_path: Path, launch: Any, dense_model: Path, make_rows: Rows
) -> None:
    body = {"instances": make_rows(2, 5).tolist()}
    with launch(tmp_path, dense_model, {"drain": "10s"}) as server:
        signalled: list[float] = []

        def progress(done: int) -> None:
            if done == 150 and not signalled:
                server.process.send_signal(signal.SIGTERM)
                signalled.append(time.monotonic())

        async def scenario() -> tuple[Counter[int], list[str], int]:
            load = asyncio.create_task(_load(server.url, 900, 16, body, progress))
            while not signalled:
                await asyncio.sleep(0.005)
            # Readiness turns false at once, while requests are still being served.
            async with (
                aiohttp.ClientSession() as session,
                session.get(server.url + "/ready") as response,
            ):
                ready_status = response.status
            statuses, failures = await load
            return statuses, failures, ready_status

        statuses, failures, ready_status = asyncio.run(scenario())
        assert failures == []
        assert statuses == Counter({200: 900})
        assert ready_status == 503
        returncode = server.process.wait(timeout=15)
        assert returncode == 0, server.logs()
        assert time.monotonic() - signalled[0] < 10 + 2, "exit within serve.drain"


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(
    tmp_path: Path, launch: Any, slow_model: Path, make_rows: Rows
) -> None:
    """Requests already inside a slow model call at SIGTERM still get their answer."""
    body = {"instances": make_rows(1, 6).tolist()}
    serve = {"drain": "20s", "batching": {"max_batch_size": 1}}
    with launch(tmp_path, slow_model, serve) as server:
        first_answer = asyncio.Event()
        finished = [0]

        def progress(done: int) -> None:
            finished[0] = done
            first_answer.set()

        async def scenario() -> tuple[Counter[int], list[str]]:
            # 12 requests queue behind one model worker, one row per call; SIGTERM arrives as
            # the first answer does, so the other 11 are queued or inside the model call.
            load = asyncio.create_task(_load(server.url, 12, 12, body, progress))
            await first_answer.wait()
            server.process.send_signal(signal.SIGTERM)
            at_signal = finished[0]
            statuses, failures = await load
            assert at_signal < 12, "the model was too fast: nothing was in flight at SIGTERM"
            return statuses, failures

        statuses, failures = asyncio.run(scenario())
        assert failures == []
        assert statuses == Counter({200: 12})
        assert server.process.wait(timeout=25) == 0, server.logs()


@pytest.mark.slow
def test_overload_answers_503_with_retry_after(
    tmp_path: Path, launch: Any, slow_model: Path, make_rows: Rows
) -> None:
    body = {"instances": make_rows(1, 7).tolist()}
    serve = {"max_queue": 2, "batching": {"max_batch_size": 1}}
    with launch(tmp_path, slow_model, serve) as server:
        statuses, failures = asyncio.run(_load(server.url, 40, 20, body))
        assert set(statuses) == {200, 503}, statuses
        assert statuses[503] >= 10
        assert all(f == "503 Retry-After=1" for f in failures), failures[:3]
        # Still serving correctly once the burst is over.
        status, answer = server.predict(body)
        assert status == 200 and len(answer["predictions"]) == 1
        families = server.request("GET", "/metrics")[2].decode()
        assert 'code="503"' in families


def _store_run(root: Path, model_dir: Path, run_id: str) -> None:
    """A training run in the store as the training step leaves it, then blessed."""
    store = Store(root / ".mlops")
    shutil.copytree(model_dir, store.run_dir(run_id) / "model")
    record = {
        "run_id": run_id,
        "model": MODEL,
        "status": "complete",
        "model_hash": "ab12" * 16,
        "lineage": {"git": {"commit": "0123456789abcdef0123456789abcdef01234567"}},
    }
    (store.run_dir(run_id) / "run.json").write_text(json.dumps(record))
    store.bless(MODEL, {"run_id": run_id, "model": MODEL})


@pytest.mark.slow
def test_default_serves_the_blessed_run_with_its_lineage(
    tmp_path: Path, launch: Any, dense_model: Path, make_rows: Rows
) -> None:
    run_id = "20260101T000000Z-abcdef12"
    _store_run(tmp_path, dense_model, run_id)
    with launch(tmp_path, None, {}) as server:
        status, body = server.predict(
            {"instances": make_rows(1, 8).tolist()}, f"/v1/models/{MODEL}/versions/{run_id}:predict"
        )
        assert status == 200, body
        metrics = server.request("GET", "/metrics")[2].decode()
        info = next(
            line for line in metrics.splitlines() if line.startswith("mlops_serve_model_info")
        )
        assert f'version="{run_id}"' in info
        assert 'git_commit="0123456789abcdef0123456789abcdef01234567"' in info
        assert 'model_hash="' + "ab12" * 16 + '"' in info
        assert "ready" in server.logs() and server.url in server.logs()


def _read_only_root(temp: Path) -> tuple[str, ...]:
    """Run a command with / read-only and only ``temp`` (a fresh tmpfs) writable, as in the pod
    (readOnlyRootFilesystem plus an emptyDir on the temp dir)."""
    script = (
        f"mount -o remount,bind,ro / && mount -t tmpfs -o size=64m tmpfs {temp} "
        f'&& TMPDIR={temp} exec "$@"'
    )
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "ro-root")


@pytest.mark.slow
def test_runs_on_a_read_only_root_filesystem(
    tmp_path: Path, launch: Any, dense_model: Path, make_rows: Rows
) -> None:
    """As in the serve image: the filesystem read-only but a temp dir, and the server serves."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    wrapper = _read_only_root(temp)
    probe = subprocess.run(
        [*wrapper, "sh", "-c", "! touch /.mlops-ro-probe 2>/dev/null && touch $TMPDIR/ok"],
        check=False,
    )
    if probe.returncode != 0:
        require_real("a mount namespace (unshare --mount, as root) to make / read-only")
    with launch(tmp_path / "server", dense_model, {"drain": "3s"}, wrapper=wrapper) as server:
        status, body = server.predict({"instances": make_rows(2, 11).tolist()})
        assert status == 200 and len(body["predictions"]) == 2
        assert server.request("GET", "/metrics")[0] == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0, server.logs()

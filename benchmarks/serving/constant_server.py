"""Limit (c2) of the serving benchmark: the server's HTTP stack with no model.

The same stack as ``mlops serve`` (aiohttp, AppRunner without access log, one process) on
the same predict route; it reads the body and answers a constant, precomputed prediction.
Its requests/s is the ceiling any model server on this stack can reach on this machine.

Usage: python benchmarks/serving/constant_server.py PORT
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from aiohttp import web

# A prediction of the same size as the real model's (10 probabilities).
CONSTANT = json.dumps({"predictions": [[0.1] * 10]}).encode()


async def predict(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=CONSTANT, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/models/{name:[^/:]+}:{verb:[A-Za-z_]+}", predict)
    app.router.add_get("/ready", healthz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"constant server ready on http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

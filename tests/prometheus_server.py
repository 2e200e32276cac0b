"""A real Prometheus (Debian's ``prometheus``) on loopback, for the rollout's analysis tests.

One server per test session (started by the ``prometheus`` fixture in tests/conftest.py):
it scrapes every second whatever targets a test writes into its file-based service
discovery list, so tests add and remove real ``mlops serve`` processes without restarting
it. Its data lives in a temporary directory and the process is stopped (by its PID) when
the session ends.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

SCRAPE_INTERVAL_S = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Prometheus:
    """A running Prometheus and the list of targets it scrapes."""

    def __init__(self, binary: str, workdir: Path, rule_files: tuple[Path, ...] = ()) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets_file = workdir / "targets.json"
        self._targets: dict[str, dict[str, str]] = {}
        self._write_targets()
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
            },
            "scrape_configs": [
                {
                    "job_name": "mlops-serve",
                    "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                    "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
                    "file_sd_configs": [
                        {"files": [str(self.targets_file)], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
        if rule_files:  # evaluated every scrape interval, like the scrapes
            config["rule_files"] = [str(path) for path in rule_files]
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def _write_targets(self) -> None:
        groups = [{"targets": [t], "labels": labels} for t, labels in self._targets.items()]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)  # Prometheus must never read a half-written list

    def add_target(self, address: str, **labels: str) -> None:
        self._targets[address] = labels
        self._write_targets()

    def remove_target(self, address: str) -> None:
        self._targets.pop(address, None)
        self._write_targets()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.log_text()[-2000:]}")

    def wait_scraped(self, address: str, timeout: float = 30) -> None:
        """Until Prometheus reports the target up (scraped at least once)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(self.url + "/api/v1/targets", timeout=5) as answer:
                active = json.loads(answer.read())["data"]["activeTargets"]
            if any(t["labels"].get("instance") == address and t["health"] == "up" for t in active):
                return
            time.sleep(0.3)
        raise RuntimeError(f"prometheus never scraped {address}")

    def log_text(self) -> str:
        self.log.flush()
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def binary() -> str | None:
    return shutil.which("prometheus")

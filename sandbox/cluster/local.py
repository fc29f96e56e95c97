"""A Ray cluster on this machine, for tests and benchmarks: a head (no `docker` resource;
it hosts the drivers' control actors) and N worker nodes (separate raylets advertising
`docker`), every process on 127.0.0.1, no dashboard, no usage reports. Its processes are
this process's children, found again by the cluster's own temp directory."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.cluster.ray_exec import connect, disconnect, ray_environment

# A killed node is declared dead in ~1.5 s rather than ~30 s.
FAST_HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}


class LocalCluster:
    """Start with `LocalCluster(workers=2)`; `shutdown()` ends every process it started."""

    def __init__(self, *, workers: int = 2, cpus: int = 2, slots: int = 2) -> None:
        os.environ.update(ray_environment("127.0.0.1:1"))
        from ray.cluster_utils import Cluster

        self.temp = tempfile.mkdtemp(prefix="sbx-ray-", dir="/tmp")  # short: socket paths
        os.environ["RAY_TMPDIR"] = self.temp
        Path(self.temp, "ray").mkdir()
        common: dict[str, Any] = {"node_ip_address": "127.0.0.1", "temp_dir": self.temp}
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                **common,
                "num_cpus": 1,
                "include_dashboard": False,
                "_system_config": FAST_HEALTH,
            },
            shutdown_at_exit=True,
        )
        self.workers = [
            self.cluster.add_node(**common, num_cpus=cpus, resources={"docker": slots})
            for _ in range(workers)
        ]
        self.address: str = self.cluster.address
        connect(self.address)

    def kill_worker(self, node_id: str) -> None:
        """Kill a worker node's processes at once (no graceful stop): a lost node."""
        for node in list(self.workers):
            if node.node_id == node_id:
                self.cluster.remove_node(node, allow_graceful=False)
                self.workers.remove(node)
                return
        raise ValueError(f"no worker node {node_id}")

    def processes(self) -> list[str]:
        """Processes on this machine whose command line names the cluster's temp dir."""
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if self.temp in cmd:
                found.append(f"{pid} {cmd[:120]}")
        return found

    def shutdown(self, wait_s: float = 30.0) -> list[str]:
        """Leave and stop the cluster; returns the processes still alive after `wait_s`."""
        disconnect()
        self.cluster.shutdown()
        deadline = time.monotonic() + wait_s
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        left = self.processes()
        if not left:
            shutil.rmtree(self.temp, ignore_errors=True)
        if os.environ.get("RAY_TMPDIR") == self.temp:
            del os.environ["RAY_TMPDIR"]
        return left


__all__ = ["FAST_HEALTH", "LocalCluster"]

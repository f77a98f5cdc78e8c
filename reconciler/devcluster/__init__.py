"""A real single-node Slurm (with accounting) and an OpenSSH login node on this machine, one per
directory: several run side by side, each with its own name, node, ports and daemons.

Used by ``reconciler dev-cluster``, the demo and the integration tests; see :mod:`.cluster`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .cluster import DevCluster, DevClusterError, default_dir

__all__ = ["DevCluster", "DevClusterError", "default_dir", "run"]


def run(action: str, directory: Path | None) -> int:
    """``reconciler dev-cluster up|down|status``: progress on stderr; ``up`` ends its standard
    output with ``export SLURM_CONF=…`` so ``eval "$(reconciler dev-cluster up)"`` readies a shell."""
    cluster = DevCluster(directory)

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        if action == "up":
            cluster.up(say=say)
            say(f"cluster {cluster.name} (node {cluster.node}) in {cluster.layout.root}")
            say(f"SlurmCluster manifests: {cluster.manifest_path('local')} {cluster.manifest_path('ssh')}")
            print(f"export SLURM_CONF={cluster.slurm_conf}")
        elif action == "down":
            cluster.down(say=say)
        else:
            status = cluster.status()
            for name, running in status.items():
                print(f"{name:10} {'running' if running else 'stopped'}")
            if cluster.layout.slurm_conf.exists():
                print(f"export SLURM_CONF={cluster.slurm_conf}")
            return 0 if all(status.values()) else 3
    except (DevClusterError, PermissionError) as exc:
        say(f"dev-cluster {action}: {exc}")
        return 1
    return 0

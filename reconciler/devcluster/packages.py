"""Installing the dev cluster's Debian packages when they are missing.

Called by :meth:`DevCluster.up`. Installs only what is absent, as root, without starting the
packages' own services: the dev cluster runs its daemons with its own configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

# Each package with a program that shows it is installed.
PACKAGES = {
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "slurmdbd": "slurmdbd",
    "slurm-client": "sbatch",
    "munge": "munged",
    "mariadb-server": "mariadbd",
    "openssh-server": "sshd",
    "openssh-client": "ssh-keygen",
    # The SSH transport streams the jobs' end records with inotifywait (else it lists each second).
    "inotify-tools": "inotifywait",
}
_POLICY = Path("/usr/sbin/policy-rc.d")


def missing_packages() -> list[str]:
    return [package for package, program in PACKAGES.items()
            if shutil.which(program) is None and not Path("/usr/sbin", program).exists()]


def ensure_installed(*, say: Callable[[str], None] = lambda _: None) -> None:
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise PermissionError(f"the dev cluster needs these Debian packages; install them as root: "
                              f"apt-get install {' '.join(missing)}")
    say(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Keep the packages' maintainer scripts from starting the system-wide daemons (exit 101:
    # "action forbidden"), the way container images do; removed again afterwards.
    installed_policy = not _POLICY.exists()
    if installed_policy:
        _POLICY.write_text("#!/bin/sh\nexit 101\n")
        _POLICY.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       env=env, check=True, timeout=1200, stdout=subprocess.DEVNULL)
    finally:
        if installed_policy:
            _POLICY.unlink(missing_ok=True)

"""Run commands and move files on a cluster's login node: on this machine (`local`), or over SSH
(`ssh`). The Slurm client holds one `Transport` per SlurmCluster, made by `open_transport`; the
contract both keep is in `base`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...api.cluster import SlurmClusterSpec, TransportKind
from .base import CommandResult, CommandTimeout, HostKeyError, Transport, TransportError
from .local import LocalTransport

if TYPE_CHECKING:
    # What `__getattr__` below hands out, for type checkers; at run time .ssh is imported on first use.
    from .ssh import SshTransport as SshTransport

__all__ = ["CommandResult", "CommandTimeout", "HostKeyError", "LocalTransport", "SshTransport", "Transport",
           "TransportError", "open_transport"]


def open_transport(spec: SlurmClusterSpec, *, private_key: str | None = None) -> Transport:
    """The transport a SlurmCluster asks for; `private_key` (e.g. from its Secret) is for SSH."""
    if spec.transport is TransportKind.SSH:
        from .ssh import SshTransport  # here, not at the top: paramiko loads only when SSH is used

        assert spec.ssh is not None  # the model rejects transport ssh without an ssh section
        return SshTransport(spec.ssh, private_key=private_key)
    return LocalTransport()


def __getattr__(name: str) -> object:
    # `from reconciler.slurm.transport import SshTransport` works too; .ssh (and paramiko) loads on first use.
    if name == "SshTransport":
        from .ssh import SshTransport

        return SshTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The SlurmCluster kind: where workflows run and how the reconciler reaches the cluster, and
what the operator last saw there (its status)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .admission import Reason, Rule, admission_rules
from .meta import API_VERSION, Condition, FrozenModel, Model, ObjectMeta
from .orchestration import Scoring
from .scriptsafe import cluster_workdir_problem
from .workflow import SLURM_WORD


class TransportKind(str, Enum):
    LOCAL = "local"
    SSH = "ssh"


class SshSettings(FrozenModel):
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.-]*\$?$", max_length=64)]
    key_file: str | None = None
    known_hosts_file: str | None = None
    accept_unknown_host_keys: bool = Field(
        default=False, description="trust a host key seen for the first time (never a changed one)"
    )
    key_secret_ref: Annotated[str, Field(description="Secret holding the private key (Kubernetes mode)")] | None = None


class Capacity(FrozenModel):
    """The reconciler's own limit on what it keeps in the cluster's queue at once."""

    max_submitted_jobs: Annotated[int, Field(ge=1)] | None = None
    max_cores: Annotated[int, Field(ge=1)] | None = None


class Partition(FrozenModel):
    name: Annotated[str, Field(pattern=SLURM_WORD, max_length=128)]
    cost_per_core_hour: Annotated[float, Field(ge=0)] = 0.0


class SlurmClusterSpec(FrozenModel):
    # _ssh_when_needed; the transport is a default the API server fills in, absent only before that.
    model_config = admission_rules(
        Rule("!has(self.transport) || self.transport != 'ssh' || has(self.ssh)", "transport ssh needs an ssh section",
             ".ssh", Reason.REQUIRED),
        Rule("!has(self.ssh) || (has(self.transport) && self.transport == 'ssh')",
             "an ssh section needs transport: ssh", ".ssh", Reason.FORBIDDEN),
    )

    transport: TransportKind = TransportKind.LOCAL
    ssh: SshSettings | None = None
    slurm_conf: str | None = None
    workdir: Annotated[str, Field(min_length=1)]
    capacity: Capacity = Field(default_factory=Capacity)
    partitions: list[Partition] = Field(default_factory=list)
    scoring: Scoring | None = Field(default=None, description=(
        "how workflows on this cluster rank the candidates of their auto resources, unless they say"))

    @field_validator("workdir")
    @classmethod
    def _workdir_usable(cls, workdir: str) -> str:
        problem = cluster_workdir_problem(workdir)
        if problem is not None:
            raise ValueError(problem)
        return workdir

    @model_validator(mode="after")
    def _ssh_when_needed(self) -> SlurmClusterSpec:
        if self.transport is TransportKind.SSH and self.ssh is None:
            raise ValueError("transport ssh needs an ssh section")
        if self.transport is TransportKind.LOCAL and self.ssh is not None:
            raise ValueError("an ssh section needs transport: ssh")
        return self

    def partition_cost(self, name: str | None) -> float:
        for partition in self.partitions:
            if partition.name == name:
                return partition.cost_per_core_hour
        return 0.0


class PartitionSeen(FrozenModel):
    name: str
    state: str = Field(description="as scontrol reports it: UP, DOWN, DRAIN or INACTIVE")


class SlurmClusterStatus(Model):
    """What the operator saw on the cluster the last time a tick looked at it. Facts read from
    ``scontrol show config`` and partitions are kept while the cluster cannot be reached; the
    job counts are left out then, since nobody knows them."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    slurm_version: str | None = None
    max_array_size: int | None = Field(default=None, description="array task ids must be below this")
    partitions: list[PartitionSeen] = Field(default_factory=list)
    queued_jobs: int | None = Field(default=None, description=(
        "the reconciler's jobs waiting in the queue (held ones too), array elements counted"))
    running_jobs: int | None = Field(default=None, description="the reconciler's jobs running, array elements counted")


class SlurmCluster(Model):
    api_version: Literal["hpc.reconciler.dev/v1alpha1"] = API_VERSION
    kind: Literal["SlurmCluster"] = "SlurmCluster"
    metadata: ObjectMeta
    spec: SlurmClusterSpec
    status: SlurmClusterStatus | None = None

"""The resource model of group hpc.reconciler.dev/v1alpha1: the single source of truth for
validation, the CRD schemas and the status the reconciler writes."""

from .cluster import (
    Capacity,
    Partition,
    PartitionSeen,
    SlurmCluster,
    SlurmClusterSpec,
    SlurmClusterStatus,
    SshSettings,
    TransportKind,
)
from .meta import API_VERSION, GROUP, VERSION, Condition, ConditionStatus, ObjectMeta
from .template import Parameter, WorkflowTemplate, WorkflowTemplateSpec
from .workflow import (
    ArraySource,
    ArraySpec,
    ArrayStatus,
    Escalation,
    FailureKind,
    Resources,
    RetryPolicy,
    Task,
    TaskDefaults,
    TaskInput,
    TaskPhase,
    TaskStatus,
    TaskType,
    TemplateRef,
    Workflow,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowStatus,
)

Resource = Workflow | WorkflowTemplate | SlurmCluster
KINDS: dict[str, type[Workflow] | type[WorkflowTemplate] | type[SlurmCluster]] = {
    "Workflow": Workflow,
    "WorkflowTemplate": WorkflowTemplate,
    "SlurmCluster": SlurmCluster,
}

__all__ = [
    "API_VERSION", "GROUP", "KINDS", "VERSION", "ArraySource", "ArraySpec", "ArrayStatus", "Capacity", "Condition",
    "ConditionStatus", "Escalation", "FailureKind", "ObjectMeta", "Parameter", "Partition", "PartitionSeen",
    "Resource", "Resources", "RetryPolicy", "SlurmCluster", "SlurmClusterSpec", "SlurmClusterStatus", "SshSettings",
    "Task", "TaskDefaults",
    "TaskInput", "TaskPhase", "TaskStatus", "TaskType", "TemplateRef", "TransportKind", "Workflow", "WorkflowPhase",
    "WorkflowSpec", "WorkflowStatus", "WorkflowTemplate", "WorkflowTemplateSpec",
]

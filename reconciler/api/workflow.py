"""The Workflow kind: a DAG of Slurm jobs and user actions, and the status the reconciler writes.

The spec models are frozen: the reconciler never mutates what a user declared. Status models are
plain data built anew by the status computation on every tick.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from .admission import Reason, Rule, admission_rules
from .approval import ApprovalParameter, ApprovalValue, ancestors, reference_problems, value_problems
from .meta import (
    API_VERSION,
    Condition,
    FrozenModel,
    LabelName,
    Labels,
    Model,
    Name,
    ObjectMeta,
)
from .orchestration import AUTO, Auto, Budget, BudgetStatus, ChoiceStatus, Scoring, TaskCandidates
from .scriptsafe import header_problem, output_pattern_problem, shell_problem
from .units import AUTO_OR_MEMORY_PATTERN, AUTO_OR_TIME_PATTERN

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Slurm accepts more in these fields, but nothing that needs a newline or a shell metacharacter;
# keeping them to this set is what makes every #SBATCH header line safe to render.
SLURM_WORD = r"^[A-Za-z0-9_.:,=+/@-]+$"
# Bounds on the lists the admission rules iterate, in the CRDs only (``maxItems``): the API server
# refuses a CRD whose rules could cost more than its budget on the largest object the schema
# allows, and stops a rule whose run costs more than a million units; checking every dependsOn
# entry against the task names costs about tasks x tasks x entries, so the largest workflow
# allowed here (tests/integration/test_kube_admission.py applies it) stays within that. The
# reconciler itself has no such limit, so a Git-mode workflow may be larger; a fan-out of more
# tasks than this is an array in either mode.
MAX_TASKS = 100
MAX_DEPENDENCIES = 32
MAX_INPUTS = 32
MAX_PARAMETERS = 32
# A path segment that is "." or ".." (in CEL, as in the validators below).
_DOT_SEGMENT = "'(^|/)[.][.]?(/|$)'"


class TaskType(str, Enum):
    JOB = "job"
    APPROVAL = "approval"


class FailureKind(str, Enum):
    """Terminal Slurm outcomes a retry policy can react to."""

    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    PREEMPTED = "PREEMPTED"


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


def _header_safe(value: str | None) -> str | None:
    if value is not None:
        _refuse(header_problem(value))
    return value


def _shell_safe_values(values: dict[str, str]) -> dict[str, str]:
    for name, value in values.items():
        problem = shell_problem(value)
        _refuse(f"{name} {problem}" if problem else None)
    return values


def _shell_text(value: str) -> str:
    _refuse(shell_problem(value))
    return value


def _output_pattern(pattern: str) -> str:
    _refuse(output_pattern_problem(pattern))
    return pattern


# Checked one by one, so an error names the item and its line.
ShellText = Annotated[str, AfterValidator(_shell_text)]
OutputPattern = Annotated[str, AfterValidator(_output_pattern)]


# "auto" in any of these asks the Orchestrator to choose the value (reconciler.core.orchestrator).
CHOOSABLE = ("partition", "nodes", "cpus", "memory", "time")


class Resources(FrozenModel):
    partition: Annotated[str, Field(pattern=SLURM_WORD, max_length=128,
                                    description="a partition, or auto")] | None = None
    nodes: Annotated[int, Field(ge=1)] | Auto | None = None
    cpus: Annotated[int, Field(ge=1, description="CPUs per task (--cpus-per-task)")] | Auto | None = None
    memory: Annotated[str, Field(pattern=AUTO_OR_MEMORY_PATTERN, description="--mem, e.g. 4G, or auto")] | None = None
    time: Annotated[str, Field(pattern=AUTO_OR_TIME_PATTERN,
                               description="--time, e.g. 01:30:00, or auto")] | None = None
    gres: Annotated[str, Field(pattern=SLURM_WORD, max_length=256)] | None = None
    account: Annotated[str, Field(pattern=SLURM_WORD, max_length=128)] | None = None
    qos: Annotated[str, Field(pattern=SLURM_WORD, max_length=128)] | None = None

    _in_header = field_validator("partition", "gres", "account", "qos")(_header_safe)

    def merged_over(self, base: Resources) -> Resources:
        """These resources with every unset field taken from ``base``."""
        return base.model_copy(update=self.model_dump(exclude_none=True))

    @property
    def cores(self) -> int:
        """The cores one element holds: CPUs per task times nodes (an unset count is one)."""
        cpus = self.cpus if isinstance(self.cpus, int) else 1
        nodes = self.nodes if isinstance(self.nodes, int) else 1
        return cpus * nodes

    @property
    def auto(self) -> tuple[str, ...]:
        """The fields the Orchestrator chooses."""
        return tuple(name for name in CHOOSABLE if getattr(self, name) == AUTO)

    def declared(self, defaults: Resources | None = None) -> Resources:
        """These resources as declared without a choice: each ``auto`` takes the value of
        ``defaults`` (a workflow's task defaults), else Slurm's default."""
        base = defaults if defaults is not None else Resources()
        return self.model_copy(update={name: None if getattr(base, name) == AUTO else getattr(base, name)
                                       for name in self.auto})


# A file in an earlier task's run directory: relative, inside it, plain enough for any shell word.
RESULT_FILE = r"^[A-Za-z0-9_.@+,=-]+(/[A-Za-z0-9_.@+,=-]+)*$"


class ArraySource(FrozenModel):
    """A file an earlier task leaves in its run directory, read once that task has succeeded."""

    model_config = admission_rules(Rule(
        f"!self.file.matches({_DOT_SEGMENT})",
        "file must name a file inside the task's run directory (no '.' or '..')", ".file"))
    task: LabelName = Field(description="the task that writes the file (listed in dependsOn)")
    file: Annotated[str, Field(pattern=RESULT_FILE, max_length=1024,
                               description="relative to that task's run directory")]

    @field_validator("file")
    @classmethod
    def _inside(cls, file: str) -> str:
        if any(part in (".", "..") for part in file.split("/")):
            raise ValueError(f"file {file!r} must name a file inside the task's run directory (no '.' or '..')")
        return file


class ArraySpec(FrozenModel):
    """A fan-out of identical jobs: one Slurm job array, sized by the manifest (``count``,
    ``items``) or by a file an earlier task writes (``countFrom``, ``itemsFrom``)."""

    model_config = admission_rules(
        Rule("(has(self.count) ? 1 : 0) + (has(self.items) ? 1 : 0) + (has(self.countFrom) ? 1 : 0)"
             " + (has(self.itemsFrom) ? 1 : 0) == 1", "set exactly one of count, items, countFrom or itemsFrom"),
        Rule("!has(self.items) || size(self.items) > 0", "items must not be empty", ".items"),
    )
    count: Annotated[int, Field(ge=1)] | None = None
    items: list[ShellText] | None = None
    count_from: ArraySource | None = Field(default=None, description=(
        "size the array by the positive integer in an earlier task's file, read when that task succeeded"))
    items_from: ArraySource | None = Field(default=None, description=(
        "one element per line of an earlier task's file (as $TASK_ITEM), read when that task succeeded"))
    parallelism: Annotated[int, Field(ge=1, description="at most this many elements at once")] | None = None

    @model_validator(mode="after")
    def _exactly_one_size(self) -> ArraySpec:
        given = [value for value in (self.count, self.items, self.count_from, self.items_from) if value is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of count, items, countFrom or itemsFrom")
        if self.items is not None and not self.items:
            raise ValueError("items must not be empty")
        return self

    @property
    def source(self) -> ArraySource | None:
        """Where a run-time size comes from; None for a size the manifest states."""
        return self.count_from or self.items_from

    @property
    def size(self) -> int:
        """The size the manifest states (a run-time size is known only to the planner)."""
        if self.source is not None:
            raise ValueError("an array sized at run time has no size in its manifest")
        return self.count if self.count is not None else len(self.items or [])


class Escalation(FrozenModel):
    """Multipliers applied to the request on a retry after the matching failure."""

    time: Annotated[float, Field(ge=1.0, description="after TIMEOUT")] | None = None
    memory: Annotated[float, Field(ge=1.0, description="after OUT_OF_MEMORY")] | None = None


class RetryPolicy(FrozenModel):
    limit: Annotated[int, Field(ge=0, le=100)] = 0
    backoff_seconds: Annotated[float, Field(ge=0)] = 10.0
    backoff_factor: Annotated[float, Field(ge=1.0)] = 2.0
    # Not "on": YAML 1.1 (kubectl's) reads that key as the boolean true.
    on_failures: list[FailureKind] = Field(default_factory=lambda: list(FailureKind),
                                           description="the ends that are retried (default: all of them)")
    escalate: Escalation | None = None


class TaskDefaults(FrozenModel):
    """Settings merged under every task of a workflow (the task's own values win)."""

    workdir: str | None = None
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    retry: RetryPolicy | None = None

    _workdir_in_header = field_validator("workdir")(_header_safe)
    _env_in_script = field_validator("env")(_shell_safe_values)


# A file or glob an input names: relative, inside its root, and plain enough to stand unquoted
# in a shell word (upstream outputs are matched by the job's own shell when it starts).
INPUT_PATH = r"^[A-Za-z0-9_.*?@+,=\[\]-]+(/[A-Za-z0-9_.*?@+,=\[\]-]+)*$"
CONFIG_MAP_KEY = r"^[-._a-zA-Z0-9]+$"


class TaskInput(FrozenModel):
    """A file (or files) the task finds in its run directory when it starts.

    ``path`` alone: a file or glob relative to the manifest's folder in the source (a bare string
    in YAML means the same). ``task`` and ``path``: files of an earlier task's run directory.
    ``configMap`` (with an optional ``key``): a ConfigMap's keys as files, in Kubernetes mode.
    """

    model_config = admission_rules(
        Rule("!has(self.configMap) || !(has(self.path) || has(self.task))", "a configMap input takes no path or task",
             reason=Reason.FORBIDDEN),
        Rule("has(self.configMap) || !has(self.key)", "key applies only to a configMap input", ".key",
             Reason.FORBIDDEN),
        Rule("has(self.configMap) || has(self.path)", "an input needs a path (with or without a task) or a configMap",
             reason=Reason.REQUIRED),
        # String functions, not a regular expression: a rule of every input of every task must be
        # cheap. The pattern of path leaves no empty segment, so these four are every ".." segment.
        Rule("!has(self.path) || !(self.path == '..' || self.path.startsWith('../') || self.path.endsWith('/..')"
             " || self.path.contains('/../'))", "input path must not leave its folder ('..')", ".path"),
    )
    path: Annotated[str, Field(pattern=INPUT_PATH, max_length=1024,
                               description="file or glob, relative to the manifest (or to the task's run directory)")
                    ] | None = None
    task: LabelName | None = Field(default=None, description="an earlier task whose outputs this is")
    config_map: Name | None = Field(default=None, description="a ConfigMap whose keys become files")
    key: Annotated[str, Field(pattern=CONFIG_MAP_KEY, max_length=253)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_path(cls, value: object) -> object:
        return {"path": value} if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _without_dot_segments(cls, path: str | None) -> str | None:
        if path is None:
            return None
        kept = [part for part in path.split("/") if part != "."]
        if not kept:
            raise ValueError(f"input path {path!r} names no file")
        return "/".join(kept)

    @model_validator(mode="after")
    def _one_kind(self) -> TaskInput:
        if self.config_map is not None:
            if self.path is not None or self.task is not None:
                raise ValueError("a configMap input takes no path or task")
        elif self.key is not None:
            raise ValueError("key applies only to a configMap input")
        elif self.path is None:
            raise ValueError("an input needs a path (with or without a task) or a configMap")
        if self.path is not None and ".." in self.path.split("/"):
            raise ValueError(f"input path {self.path!r} must not leave its folder ('..')")
        return self

    @property
    def described(self) -> str:
        if self.config_map is not None:
            return f"configMap {self.config_map}" + (f" key {self.key}" if self.key else "")
        return f"{self.path} of task {self.task}" if self.task else str(self.path)


MAX_APPROVAL_NOTE = 200
TASK_KIND = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
# In a Task's rules: the type is a default the API server fills in, absent only before that.
_APPROVAL = "(has(self.type) && self.type == 'approval')"


def _in_depends_on(task: str) -> str:
    return f"(has(self.dependsOn) && {task} in self.dependsOn)"


class Task(FrozenModel):
    # The checks of _body_matches_type and of its helpers that read only the task's typed fields,
    # and the self-dependency of manifests.dag; the others stay with the model.
    model_config = admission_rules(
        Rule(f"{_APPROVAL} || has(self.script) != has(self.command)",
             "a job task needs exactly one of script or command", reason=Reason.REQUIRED),
        Rule("!has(self.command) || size(self.command) > 0", "command must not be empty", ".command"),
        Rule(f"{_APPROVAL} || (!has(self.rejected) && (!has(self.parameters) || size(self.parameters) == 0))",
             "rejected and parameters apply only to approval tasks", reason=Reason.FORBIDDEN),
        Rule(f"!{_APPROVAL} || !(has(self.script) || has(self.command) || has(self.array))",
             "an approval task runs nothing: no script, command or array", reason=Reason.FORBIDDEN),
        Rule(f"!{_APPROVAL} || !has(self.inputs) || size(self.inputs) == 0",
             "an approval task runs nothing, so it takes no inputs", ".inputs", Reason.FORBIDDEN),
        Rule("!has(self.dependsOn) || self.dependsOn.all(d, self.dependsOn.exists_one(e, e == d))",
             "dependsOn lists a task twice", ".dependsOn"),
        Rule("!has(self.dependsOn) || !(self.name in self.dependsOn)", "a task cannot depend on itself",
             ".dependsOn"),
        Rule(f"!has(self.inputs) || self.inputs.all(i, !has(i.task) || {_in_depends_on('i.task')})",
             "an input from an earlier task needs that task in dependsOn", ".inputs"),
        Rule(f"!has(self.array) || ((!has(self.array.countFrom) || {_in_depends_on('self.array.countFrom.task')})"
             f" && (!has(self.array.itemsFrom) || {_in_depends_on('self.array.itemsFrom.task')}))",
             "an array sized from a task's file needs that task in dependsOn", ".array"),
        Rule("!has(self.parameters) || self.parameters.all(p, self.parameters.exists_one(q, q.name == p.name))",
             "parameters lists a name twice", ".parameters"),
    )

    name: LabelName
    depends_on: list[LabelName] = Field(default_factory=list, json_schema_extra={"maxItems": MAX_DEPENDENCIES})
    type: TaskType = TaskType.JOB
    # A note (any text) approves like true; changing the value approves the task again.
    approved: bool | str | dict[str, ApprovalValue] = Field(default=False, description=(
        "true, a note saying what was checked, or the values of the task's parameters: approves the task as it "
        "is where this value first appears; change the value to approve again"))
    rejected: Annotated[str, Field(min_length=1, max_length=MAX_APPROVAL_NOTE)] | None = Field(
        default=None, description="an approval task refused, with the reason: the task fails until approved again")
    parameters: list[ApprovalParameter] = Field(default_factory=list, json_schema_extra={"maxItems": MAX_PARAMETERS},
                                                description=(
        "an approval task's values, given when approving; later tasks read them as "
        "{{ approvals.TASK.NAME }} and $APPROVAL_TASK_NAME"))
    script: str | None = None
    command: list[ShellText] | None = None
    workdir: str | None = None
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    array: ArraySpec | None = None
    retry: RetryPolicy | None = None
    outputs: list[OutputPattern] = Field(default_factory=list)
    inputs: list[TaskInput] = Field(default_factory=list, json_schema_extra={"maxItems": MAX_INPUTS})
    labels: Labels = Field(default_factory=dict)
    kind: Annotated[str, Field(pattern=TASK_KIND, max_length=128, description=(
        "the key runs of one kind of task share for choosing resources (default: the template's or "
        "workflow's name and the task's)"))] | None = None
    size_hint: Annotated[float, Field(ge=0, description=(
        "how big this run is (e.g. grid points), for predicting its run time from runs of other sizes"))
                        ] | None = None
    candidates: TaskCandidates | None = Field(default=None, description=(
        "the values the reconciler may choose for the task's auto resources"))

    # The name and workdir reach #SBATCH lines (--job-name, --chdir); the script, command, env
    # and outputs reach the job's script and the output fetch.
    _in_header = field_validator("name", "workdir")(_header_safe)
    _env_in_script = field_validator("env")(_shell_safe_values)

    @field_validator("script")
    @classmethod
    def _script_shell_safe(cls, script: str | None) -> str | None:
        _refuse(shell_problem(script) if script is not None else None)
        return script

    @model_validator(mode="after")
    def _body_matches_type(self) -> Task:
        if self.type is TaskType.JOB:
            if (self.script is None) == (self.command is None):
                raise ValueError("a job task needs exactly one of script or command")
            if self.command is not None and not self.command:
                raise ValueError("command must not be empty")
            if self.approved or self.rejected is not None or self.parameters:
                raise ValueError("approved, rejected and parameters apply only to approval tasks")
        else:
            if self.script is not None or self.command is not None or self.array is not None:
                raise ValueError("an approval task runs nothing: no script, command or array")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise ValueError("dependsOn lists a task twice")
        if isinstance(self.approved, str) and not 0 < len(self.approved.strip()) <= MAX_APPROVAL_NOTE:
            raise ValueError(f"approved: a note must have 1 to {MAX_APPROVAL_NOTE} characters (or use true)")
        self._check_inputs()
        self._check_array_source()
        self._check_parameters()
        return self

    def _check_parameters(self) -> None:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError("parameters lists a name twice")
        if self.rejected is not None and self.approved is not False:
            raise ValueError("approved and rejected exclude each other: keep the one that holds")
        if isinstance(self.approved, dict):
            problems = value_problems(self.parameters, self.approved)
            if problems:
                raise ValueError(f"approved: {'; '.join(problems)}")

    @property
    def texts(self) -> list[str]:
        """What may name an approval's values: the script, the command, the environment values."""
        return [*([self.script] if self.script else []), *(self.command or []), *self.env.values()]

    def _check_inputs(self) -> None:
        if self.inputs and self.type is TaskType.APPROVAL:
            raise ValueError("an approval task runs nothing, so it takes no inputs")
        for item in self.inputs:
            # A prerequisite, not an implied one: the order of the DAG stays what dependsOn says.
            if item.task is not None and item.task not in self.depends_on:
                raise ValueError(f"input {item.described}: add {item.task!r} to dependsOn")

    def _check_array_source(self) -> None:
        source = self.array.source if self.array is not None else None
        if source is not None and source.task not in self.depends_on:
            # Read only after that task succeeded: it must come first in the DAG, as declared.
            raise ValueError(f"array size from task {source.task!r}: add {source.task!r} to dependsOn")

    def with_defaults(self, defaults: TaskDefaults) -> Task:
        """The task as it will run: ``defaults`` fill what the task leaves unset."""
        return self.model_copy(
            update={
                "workdir": self.workdir if self.workdir is not None else defaults.workdir,
                "env": {**defaults.env, **self.env},
                "resources": self.resources.merged_over(defaults.resources),
                "retry": self.retry if self.retry is not None else defaults.retry,
            }
        )


ArgumentValue = str | int | float | bool


class TemplateRef(FrozenModel):
    name: Name


class WorkflowSpec(FrozenModel):
    # The checks of _tasks_or_template over typed fields (arguments are free-form, invisible to
    # CEL), and the unknown names of manifests.dag; cycles stay with the model's caller.
    model_config = admission_rules(
        Rule("has(self.templateRef) || (has(self.tasks) && size(self.tasks) > 0)",
             "a workflow needs tasks or a templateRef", ".tasks", Reason.REQUIRED),
        Rule("!has(self.templateRef) || !has(self.tasks) || size(self.tasks) == 0",
             "a workflow with a templateRef takes its tasks from the template", ".tasks", Reason.FORBIDDEN),
        Rule("!has(self.tasks) || self.tasks.all(t, self.tasks.exists_one(u, u.name == t.name))",
             "task names must be unique within a workflow", ".tasks"),
        # Kubernetes' sets library: its cost is the product of the two lists' sizes, a nested
        # exists would cost that many times more, beyond the API server's budget.
        Rule("!has(self.tasks) || self.tasks.all(t, !has(t.dependsOn)"
             " || sets.contains(self.tasks.map(u, u.name), t.dependsOn))",
             "every dependsOn entry must name a task of this workflow", ".tasks"),
        Rule("!has(self.tasks) || self.tasks.all(t, !has(t.inputs) || !sets.intersects("
             "self.tasks.filter(u, has(u.type) && u.type == 'approval').map(u, u.name),"
             " t.inputs.filter(i, has(i.task)).map(i, i.task)))",
             "an approval task leaves no files: no input can name it", ".tasks"),
    )

    # A list or "auto" (every declared cluster): the reconciler picks one when the workflow starts.
    cluster: Name | list[Name] | None = Field(default=None, description=(
        "a SlurmCluster, a list of candidate clusters, or auto (any declared cluster)"))
    scoring: Scoring | None = Field(default=None, description=(
        "how candidate configurations of auto resources are ranked (default: the cluster's, else 'time')"))
    budget: Budget | None = None
    suspend: bool = False
    template_ref: TemplateRef | None = None
    arguments: dict[str, ArgumentValue] = Field(default_factory=dict)
    defaults: TaskDefaults = Field(default_factory=TaskDefaults)
    tasks: list[Task] = Field(default_factory=list, json_schema_extra={"maxItems": MAX_TASKS})
    ttl_seconds_after_finished: Annotated[int, Field(ge=0, description=(
        "once the workflow has succeeded or failed for this long, its run directories on the cluster and the "
        "fetched outputs' copies are removed (status and history are kept)"))] | None = None

    @model_validator(mode="after")
    def _tasks_or_template(self) -> WorkflowSpec:
        if self.template_ref is None:
            if not self.tasks:
                raise ValueError("a workflow needs tasks or a templateRef")
            if self.arguments:
                raise ValueError("arguments apply only with a templateRef")
        elif self.tasks:
            raise ValueError("a workflow with a templateRef takes its tasks from the template")
        names = [t.name for t in self.tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate task names: {', '.join(duplicates)}")
        approvals = {t.name for t in self.tasks if t.type is TaskType.APPROVAL}
        for task in self.tasks:
            for item in task.inputs:
                if item.task in approvals:
                    raise ValueError(f"task {task.name}: input {item.described}: an approval task leaves no files")
        self._check_approval_references()
        return self

    def _check_approval_references(self) -> None:
        declared = {t.name: t.parameters for t in self.tasks if t.type is TaskType.APPROVAL}
        depends_on = {t.name: t.depends_on for t in self.tasks}
        texts = [*self.defaults.env.values()]
        problems = [problem for task in self.tasks for problem in reference_problems(
            task.name, [*task.texts, *texts], before=ancestors(depends_on, task.name), declared=declared)]
        if problems:
            raise ValueError("; ".join(problems))

    def effective_tasks(self) -> list[Task]:
        return [task.with_defaults(self.defaults) for task in self.tasks]


class WorkflowPhase(str, Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    INVALID = "Invalid"


class TaskPhase(str, Enum):
    WAITING = "Waiting"
    QUEUED = "Queued"
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    RETRYING = "Retrying"
    HELD = "Held"
    AWAITING_APPROVAL = "AwaitingApproval"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"
    UNKNOWN = "Unknown"


class ArrayStatus(Model):
    """Per-state element counts and index ranges ("0-9999,10002"), small for any array size."""

    total: int
    counts: dict[str, int] = Field(default_factory=dict)
    indices: dict[str, str] = Field(default_factory=dict)


class OutputsPhase(str, Enum):
    """Where a succeeded task's declared outputs are: still to fetch, fetched, or not there."""

    PENDING = "Pending"
    FETCHED = "Fetched"
    FAILED = "Failed"  # the last try failed; tried again after a backoff
    MISSING = "Missing"  # a declared pattern matched no file


class TaskOutputsStatus(Model):
    phase: OutputsPhase
    reason: str
    message: str | None = None
    files: int = 0
    path: str | None = None  # where the fetched files are, on the reconciler's machine
    tries: int = 0


class TaskEfficiency(Model):
    """How much of what the latest finished attempt of a task was given it used."""

    cpu: float | None = Field(default=None, description="TotalCPU / (elapsed x allocated CPUs)")
    memory: float | None = Field(default=None, description="the largest MaxRSS / requested memory")


class ApprovalStatus(Model):
    """What an approval task with parameters asks for, and the values that hold now."""

    parameters: list[ApprovalParameter] = Field(default_factory=list)
    values: dict[str, ApprovalValue] = Field(default_factory=dict, description=(
        "the values of the approval that holds (defaults filled in); the tasks after it run with these"))


class TaskStatus(Model):
    phase: TaskPhase = TaskPhase.WAITING
    job_id: str | None = None
    attempts: int = 0
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    core_hours: float = 0.0  # billed_core_seconds in hours, rounded
    billed_core_seconds: int = Field(default=0, description=(
        "core-seconds as Slurm's accounting bills them (elapsed x the billing TRES, else x CPUs; a running "
        "job's time so far, to the last whole minute, x CPUs), every attempt and array element summed"))
    efficiency: TaskEfficiency | None = None  # of the latest finished attempt
    fingerprint: str | None = None
    array: ArrayStatus | None = None
    outputs: TaskOutputsStatus | None = None  # a succeeded task's declared outputs
    choice: ChoiceStatus | None = None  # what was chosen for the task's auto resources, and why
    approval: ApprovalStatus | None = None  # an approval task with parameters: asked for, and given


class WorkflowStatus(Model):
    observed_generation: int | None = None
    phase: WorkflowPhase = WorkflowPhase.PENDING
    conditions: list[Condition] = Field(default_factory=list)
    progress: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    core_hours: float = 0.0
    billed_core_seconds: int = 0  # the sum over the tasks'
    revision: str | None = None
    cleaned_at: datetime | None = None  # when ttlSecondsAfterFinished removed its files
    cluster: str | None = None  # where it runs, when the spec names candidates
    budget: BudgetStatus | None = None
    tasks: dict[str, TaskStatus] = Field(default_factory=dict)


class Workflow(Model):
    api_version: Literal["hpc.reconciler.dev/v1alpha1"] = API_VERSION
    kind: Literal["Workflow"] = "Workflow"
    metadata: ObjectMeta
    spec: WorkflowSpec
    status: WorkflowStatus | None = None

    @field_validator("metadata")
    @classmethod
    def _names_in_header(cls, metadata: ObjectMeta) -> ObjectMeta:
        # --job-name, --chdir and --output carry the namespace and the name.
        for what, value in (("name", metadata.name), ("namespace", metadata.namespace)):
            problem = header_problem(value)
            _refuse(f"{what} {problem}" if problem else None)
        return metadata

"""The ``reconciler`` command line: argument parsing and wiring only.

Each sub-command hands over to the module that owns the work; nothing here decides anything.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from .logformat import LogFormat, configure_logging

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

if TYPE_CHECKING:
    from ..manifests.resolve import ResolvedWorkflow


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..manifests.loader import load_paths
    from ..manifests.resolve import resolve

    loaded = load_paths([Path(p) for p in args.paths])
    resolution = resolve(loaded.resources, require_cluster=False)
    errors = [*loaded.errors, *resolution.errors, *(e for wf in resolution.invalid for e in wf.errors)]
    for resolved in resolution.workflows:
        meta = resolved.workflow.metadata
        jobs = sum(1 for t in resolved.tasks.values() if t.type.value == "job")
        cluster = resolved.cluster.metadata.name if resolved.cluster else "(no SlurmCluster given)"
        print(f"ok  workflow {meta.namespace}/{meta.name}: {len(resolved.tasks)} tasks "
              f"({jobs} jobs), order {' -> '.join(resolved.order)}, cluster {cluster}")
    for name in sorted(resolution.clusters):
        print(f"ok  slurmcluster {name}")
    for error in errors:
        print(str(error), file=sys.stderr)
    if errors:
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return 1
    if not loaded.resources:
        print("no resources found", file=sys.stderr)
        return 1
    return 0


def _load_workflow(source: str, name: str, *, require_cluster: bool):
    """The resolved workflow ``name`` ("ns/name" or "name") from manifests under ``source``,
    or an error message."""
    from ..manifests.loader import load_paths
    from ..manifests.resolve import resolve

    # Names relative to the source's folder, as a running loop's are: inputs are found beside them.
    loaded = load_paths([Path(source)], relative_to=_source_root(source))
    resolution = resolve(loaded.resources, require_cluster=require_cluster)
    namespace, _, short = name.rpartition("/")
    for resolved in resolution.workflows:
        meta = resolved.workflow.metadata
        if meta.name == short and namespace in ("", meta.namespace):
            return resolved
    for invalid in resolution.invalid:
        if invalid.workflow.metadata.name == short:
            return "\n".join(str(e) for e in invalid.errors)
    known = ", ".join(sorted(r.workflow.metadata.name for r in resolution.workflows)) or "none"
    return f"no valid workflow {name!r} under {source} (valid workflows: {known})"


def _on_one_cluster(resolved: ResolvedWorkflow) -> ResolvedWorkflow:
    """A workflow that names candidate clusters, placed on the first of them: choosing among
    them takes the history and the queues only a running loop has."""
    if resolved.cluster is not None or not resolved.candidates:
        return resolved
    first = resolved.candidates[0]
    print(f"note: workflow {resolved.workflow.metadata.name} names candidate clusters; using the first, "
          f"{first.metadata.name} (`reconciler run` chooses among them)", file=sys.stderr)
    return dataclasses.replace(resolved, cluster=first)


def _source_root(source: str) -> Path:
    """The folder a ``--source`` path's manifest names (and their inputs) are relative to."""
    path = Path(source)
    return path if path.is_dir() else path.parent


def _cmd_render(args: argparse.Namespace) -> int:
    from ..core.fingerprint import fingerprints
    from ..slurm import endrecords
    from ..slurm.script import render_script, task_paths, upstream_files
    from ..slurm.tags import JobTag

    resolved = _load_workflow(args.source, args.workflow, require_cluster=True)
    if isinstance(resolved, str):
        print(resolved, file=sys.stderr)
        return 1
    task = resolved.tasks.get(args.task)
    if task is None or task.type.value != "job":
        jobs = [n for n, t in resolved.tasks.items() if t.type.value == "job"]
        print(f"workflow {args.workflow} has no job task {args.task!r}; its jobs: {', '.join(jobs)}", file=sys.stderr)
        return 1
    if task.array is not None and task.array.source is not None:
        print(f"task {task.name} is sized at run time by {task.array.source.file} of task {task.array.source.task}: "
              "its script exists once `reconciler run` has read that file", file=sys.stderr)
        return 1
    meta = resolved.workflow.metadata
    resolved = _on_one_cluster(resolved)
    assert resolved.cluster is not None
    if task.resources.auto:
        print(f"note: {', '.join(task.resources.auto)} of {task.name} are auto: `reconciler run` chooses them from "
              "the runs it has seen (`reconciler explain`); rendered here with the declared defaults", file=sys.stderr)
        task = task.model_copy(update={"resources": task.resources.declared(resolved.spec.defaults.resources)})
    tag = JobTag(uid=args.uid or meta.uid or "preview", task=task.name, attempt=args.attempt, part=0,
                 fingerprint=fingerprints(resolved.graph)[task.name])
    paths = task_paths(cluster_workdir=resolved.cluster.spec.workdir, namespace=meta.namespace,
                       workflow=meta.name, task=task, tag=tag)
    prerequisites = [u for u in sorted(resolved.graph.predecessors(task.name)) if resolved.tasks[u].type.value == "job"]
    if prerequisites and not args.after:
        print(f"note: at submission, --dependency=afterok names the jobs of {', '.join(prerequisites)} "
              "(give --after JOBID to render it)", file=sys.stderr)
    sys.stdout.write(render_script(
        workflow=meta.name, namespace=meta.namespace, task=task, tag=tag, resources=task.resources,
        run_dir=paths.run_dir, log_dir=paths.log_dir,
        indices=tuple(range(task.array.size)) if task.array else None,
        parallelism=task.array.parallelism if task.array else None, dependencies=tuple(args.after),
        inputs_from=upstream_files(task, resolved.tasks, cluster_workdir=resolved.cluster.spec.workdir,
                                   namespace=meta.namespace, workflow=meta.name),
        end_records=endrecords.folder(resolved.cluster.spec.workdir),
    ))
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from ..engine.endwatch import EndWatch
    from ..engine.staging import find_inputs
    from ..slurm.client import SlurmClient, SlurmError
    from ..slurm.transport import TransportError, open_transport
    from ..sources.base import Wakeup
    from ..sources.directory import DirectoryFiles
    from .submit import follow, submit_workflow

    resolved = _load_workflow(args.source, args.workflow, require_cluster=True)
    if isinstance(resolved, str):
        print(resolved, file=sys.stderr)
        return 1
    resolved = _on_one_cluster(resolved)
    assert resolved.cluster is not None
    client = SlurmClient(resolved.cluster, open_transport(resolved.cluster.spec))
    ends: EndWatch | None = None
    try:
        inputs = find_inputs(resolved, content=DirectoryFiles(_source_root(args.source)), config_maps=None)
        submission = submit_workflow(resolved, client, inputs=inputs)
        for task, job_ids in submission.jobs.items():
            print(f"{task:20} submitted as job {','.join(job_ids)}")
        for task, why in submission.blocked.items():
            print(f"{task:20} not submitted: {why}")
        if not args.wait:
            return 0
        # A job's end record cuts the wait between two polls short.
        wakeup = Wakeup()
        ends = EndWatch(client.transport, workdir=resolved.cluster.spec.workdir, wake=wakeup.wake,
                        name=resolved.cluster.metadata.name)
        outcomes = follow(client, submission, timeout=args.timeout, ends=ends, pause=wakeup.wait,
                          report=lambda task, o: print(f"{task:20} {o.phase.value:10} {o.detail}", flush=True))
    except (SlurmError, TransportError, TimeoutError) as exc:
        print(f"submit: {exc}", file=sys.stderr)
        return 1
    finally:
        if ends is not None:
            ends.close()
        client.close()
    return 0 if all(o.phase.value == "Succeeded" for o in outcomes.values()) else 1


def _cmd_crds(args: argparse.Namespace) -> int:
    from ..api.crds import render_crds_yaml, write_crds

    if args.write:
        for path in write_crds(Path(args.write)):
            print(f"wrote {path}")
    else:
        sys.stdout.write(render_crds_yaml())
    return 0


def _cmd_dev_cluster(args: argparse.Namespace) -> int:
    from .. import devcluster

    directory = Path(args.dir) if args.dir else None
    return devcluster.run(args.action, directory)


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..dashboard.command import DashboardOptions, serve
    from .commands import state_dir

    return serve(state_dir=state_dir(args.state_dir), options=DashboardOptions(
        address=args.address, port=args.port, allow_approve=args.allow_approve,
        token_file=Path(args.token_file) if args.token_file else None,
        source=Path(args.source) if args.source else None))


def _served(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``command`` (the loop of ``run`` or ``operator``) with the dashboard beside it, in a thread of
    the same process, when ``--dashboard-port`` is given."""
    def with_dashboard(args: argparse.Namespace) -> int:
        if args.dashboard_port is None:
            return command(args)
        from ..dashboard.command import DashboardOptions, TokenFileError, serving
        from .commands import state_dir

        options = DashboardOptions(
            address=args.dashboard_address, port=args.dashboard_port, allow_approve=args.dashboard_allow_approve,
            token_file=Path(args.dashboard_token_file) if args.dashboard_token_file else None)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(serving(state_dir(args.state_dir), options))
            except (TokenFileError, OSError) as exc:
                print(f"{args.command}: the dashboard cannot start: {exc}", file=sys.stderr)
                return 2
            return command(args)

    return with_dashboard


def _cmd_run(args: argparse.Namespace) -> int:
    from .commands import run

    return run(source=args.source, path=args.path, branch=args.branch, state=args.state_dir,
               interval=args.interval, once=args.once, until_done=args.until_done,
               webhook_port=args.webhook_port, webhook_secret_file=args.webhook_secret_file,
               metrics_port=args.metrics_port, metrics_address=args.metrics_address,
               group_label=args.metrics_group_label)


def _cmd_get(args: argparse.Namespace) -> int:
    from .commands import get_tasks, get_workflow, get_workflows

    if args.watch and (args.kind in ("tasks", "task") or args.name):
        print("get: --watch follows the list of workflows (`get workflows --watch`); one workflow: "
              "`describe workflow NAME --watch`", file=sys.stderr)
        return 2
    if args.kind in ("tasks", "task"):
        if args.name:
            print("get tasks: select tasks with -l and --workflow, not by name", file=sys.stderr)
            return 2
        return get_tasks(state=args.state_dir, selector=args.selector, workflow=args.workflow, output=args.output)
    if args.workflow:
        print("get workflows: --workflow applies only to get tasks", file=sys.stderr)
        return 2
    if args.name:
        return get_workflow(state=args.state_dir, name=args.name, output=args.output)
    return get_workflows(state=args.state_dir, selector=args.selector, output=args.output, watch=args.watch)


def _cmd_describe(args: argparse.Namespace) -> int:
    from .commands import describe_workflow

    return describe_workflow(state=args.state_dir, name=args.name, watch=args.watch)


def _cmd_logs(args: argparse.Namespace) -> int:
    from ..slurm.script import Stream
    from .logs import logs

    return logs(state=args.state_dir, name=args.workflow, task=args.task, source=args.source, attempt=args.attempt,
                index=args.index, follow=args.follow, stream=Stream.ERR if args.stderr else Stream.OUT)


def _cmd_suspend(args: argparse.Namespace) -> int:
    from .desired import suspend

    return suspend(state=args.state_dir, name=args.workflow, suspend=args.command == "suspend")


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .desired import rerun

    return rerun(state=args.state_dir, name=args.workflow, task=args.task)


def _cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain

    return explain(state=args.state_dir, name=args.workflow, task=args.task, output=args.output)


def _cmd_history(args: argparse.Namespace) -> int:
    from .history import history

    return history(state=args.state_dir, kind=args.kind, limit=args.limit, output=args.output)


def _cmd_approve(args: argparse.Namespace) -> int:
    from .approving import approve

    return approve(state=args.state_dir, name=args.workflow, task=args.task, assignments=args.set or ())


def _cmd_reject(args: argparse.Namespace) -> int:
    from .approving import reject

    return reject(state=args.state_dir, name=args.workflow, task=args.task, reason=args.reason)


def _cmd_cancel(args: argparse.Namespace) -> int:
    from .verbs import cancel

    return cancel(state=args.state_dir, name=args.workflow, task=args.task)


def _cmd_retry(args: argparse.Namespace) -> int:
    from .verbs import retry

    return retry(state=args.state_dir, name=args.workflow, task=args.task)


def _cmd_diff(args: argparse.Namespace) -> int:
    from .verbs import diff

    return diff(source=args.source, path=args.path, branch=args.branch, revision=args.revision,
                state=args.state_dir, output=args.output)


def _cmd_operator(args: argparse.Namespace) -> int:
    from ..kube.operator import run_operator
    from .commands import state_dir

    return run_operator(namespace=None if args.all_namespaces else args.namespace, kubeconfig=args.kubeconfig,
                        state_dir=state_dir(args.state_dir), interval=args.interval, metrics_port=args.metrics_port,
                        lease_namespace=args.lease_namespace, identity=args.identity,
                        metrics_address=args.metrics_address, group_label=args.metrics_group_label)


def _source_options(parser: argparse.ArgumentParser) -> None:
    """Where the manifests are: the options ``run`` and ``diff`` share, so both read a source alike."""
    parser.add_argument("--source", required=True, metavar="SRC",
                        help="a directory, a Git repository path, or a file://, ssh:// or https:// Git URL")
    parser.add_argument("--path", metavar="SUBDIR", help="read manifests only under this folder of the source")


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR",
                        help="status store and outputs (default: $RECONCILER_STATE_DIR, else "
                             "$XDG_STATE_HOME/slurm-reconciler)")


def _metrics_options(parser: argparse.ArgumentParser, *, address: str) -> None:
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics (/metrics) and /healthz on this port (0: any free port)")
    parser.add_argument("--metrics-address", default=address, metavar="ADDR",
                        help=f"the address the metrics port listens on (default {address})")
    parser.add_argument("--metrics-group-label", metavar="KEY",
                        help="split the core-hours metric by the value of this workflow label (e.g. team)")


def _log_options(parser: argparse.ArgumentParser) -> None:
    """Every command logs alike; the long-running ones (run, operator) are where it matters."""
    parser.add_argument("--log-format", type=LogFormat, choices=list(LogFormat), metavar="{auto,json,text}",
                        default=os.environ.get("RECONCILER_LOG_FORMAT", "auto").lower(),
                        help="json: one JSON object a line; text; auto (default, or $RECONCILER_LOG_FORMAT): "
                             "JSON unless stderr is a terminal")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                        default=os.environ.get("RECONCILER_LOG_LEVEL", "INFO").upper(),
                        help="default INFO, or $RECONCILER_LOG_LEVEL")


def _dashboard_options(parser: argparse.ArgumentParser) -> None:
    """The dashboard beside a loop: ``reconciler serve``'s options, prefixed."""
    parser.add_argument("--dashboard-port", type=int, metavar="PORT",
                        help="serve the web dashboard on this port too (0: any free port)")
    parser.add_argument("--dashboard-address", default="127.0.0.1", metavar="ADDR",
                        help="the dashboard's address (default 127.0.0.1: this machine only)")
    parser.add_argument("--dashboard-allow-approve", action="store_true",
                        help="let the dashboard approve tasks, for requests that present the token")
    parser.add_argument("--dashboard-token-file", metavar="FILE", help="the token approving from the dashboard needs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler", description="Declarative workflows on Slurm: declare, push, and let the loop run them."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check manifests: schema, templates, DAG, cluster references")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or folders")
    validate.set_defaults(func=_cmd_validate)

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions generated from the models")
    crds.add_argument("--write", metavar="DIR", help="write one file per CRD into DIR instead")
    crds.set_defaults(func=_cmd_crds)

    render = commands.add_parser("render", help="print the batch script that would be submitted for a task")
    render.add_argument("workflow", help="workflow name (or namespace/name)")
    render.add_argument("task")
    render.add_argument("--source", required=True, metavar="PATH", help="manifest file or folder")
    render.add_argument("--attempt", type=int, default=1)
    render.add_argument("--uid", help="the workflow uid in the identity tag (default: metadata.uid, else 'preview')")
    render.add_argument("--after", action="append", default=[], metavar="JOBID",
                        help="a prerequisite's job id, for the --dependency line (repeatable)")
    render.set_defaults(func=_cmd_render)

    submit = commands.add_parser("submit", help="submit every job of a workflow once, chained with Slurm dependencies")
    submit.add_argument("workflow", help="workflow name (or namespace/name)")
    submit.add_argument("--source", required=True, metavar="PATH",
                        help="manifest file or folder (with its SlurmCluster)")
    submit.add_argument("--wait", action="store_true", help="follow the jobs until Slurm reports each one finished")
    submit.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="give up waiting after this")
    submit.set_defaults(func=_cmd_submit)

    run = commands.add_parser("run", help="the control loop: reconcile a directory or Git repository onto Slurm")
    _source_options(run)
    run.add_argument("--branch", metavar="B", help="Git branch to follow (default: the repository's HEAD)")
    _state_dir_option(run)
    run.add_argument("--interval", type=float, default=10.0, metavar="S",
                     help="seconds between ticks when nothing wakes the loop earlier (default 10)")
    run.add_argument("--once", action="store_true", help="run a single tick and exit")
    run.add_argument("--until-done", action="store_true",
                     help="exit 0 once every workflow succeeded, 1 once all ended and one did not")
    run.add_argument("--webhook-port", type=int, metavar="PORT",
                     help="accept push notifications (POST /hook) on this port, like Flux's receiver")
    run.add_argument("--webhook-secret-file", metavar="FILE",
                     help="shared secret the notifications must be signed with (GitHub or GitLab style)")
    _metrics_options(run, address="127.0.0.1")
    _dashboard_options(run)
    run.set_defaults(func=_served(_cmd_run))

    operator = commands.add_parser("operator", help="the control loop in Kubernetes: Workflow resources onto Slurm")
    scope = operator.add_mutually_exclusive_group()
    scope.add_argument("--namespace", default="default", metavar="NS", help="watch one namespace (default: default)")
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    operator.add_argument("--kubeconfig", metavar="FILE", help="default: in-cluster, else ~/.kube/config")
    _state_dir_option(operator)
    operator.add_argument("--interval", type=float, default=10.0, metavar="S",
                          help="seconds between ticks when no change wakes the loop earlier (default 10)")
    _metrics_options(operator, address="0.0.0.0")
    operator.add_argument("--lease-namespace", metavar="NS",
                          help="where the leader-election Lease lives (default: $POD_NAMESPACE, else the watched one)")
    operator.add_argument("--identity", help="this replica's name in the Lease (default: $POD_NAME, else host-random)")
    _dashboard_options(operator)
    operator.set_defaults(func=_served(_cmd_operator))

    get = commands.add_parser("get", help="list workflows or their tasks, or show one workflow, with their status")
    get.add_argument("kind", choices=["workflows", "workflow", "wf", "tasks", "task"])
    get.add_argument("name", nargs="?", help="a workflow name (or namespace/name)")
    get.add_argument("-l", "--selector", metavar="SELECTOR",
                     help="only those whose labels match this Kubernetes label selector "
                          "(k=v, k!=v, k in (a,b), k notin (a,b), k, !k; commas AND the terms)")
    get.add_argument("--workflow", metavar="NAME", help="get tasks: only this workflow's (name or namespace/name)")
    get.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table")
    get.add_argument("-w", "--watch", action="store_true",
                     help="get workflows: draw the table again whenever it changes, with a progress bar per "
                          "workflow (array elements counted), until Ctrl-C")
    _state_dir_option(get)
    get.set_defaults(func=_cmd_get)

    describe = commands.add_parser("describe", help="a workflow's tasks, job ids, attempts, reasons and events")
    describe.add_argument("kind", choices=["workflow", "wf"])
    describe.add_argument("name")
    describe.add_argument("-w", "--watch", action="store_true",
                          help="draw it again whenever it changes, under a progress bar, until Ctrl-C")
    _state_dir_option(describe)
    describe.set_defaults(func=_cmd_describe)

    logs = commands.add_parser("logs", help="print a task's output from the cluster (its latest attempt), like "
                                            "kubectl logs")
    logs.add_argument("workflow", help="workflow name (or namespace/name)")
    logs.add_argument("task")
    logs.add_argument("--source", metavar="PATH",
                      help="manifest file or folder holding the SlurmCluster the job ran on (default: the cluster "
                           "as the loop recorded it)")
    logs.add_argument("--attempt", type=int, metavar="N", help="this attempt (default: the latest)")
    logs.add_argument("--index", type=int, metavar="I",
                      help="an array's element (default: its first, named on stderr)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing as the job writes, until it ends (waits for a pending job to start)")
    logs.add_argument("--stderr", action="store_true", help="the error stream instead of the output")
    _state_dir_option(logs)
    logs.set_defaults(func=_cmd_logs)

    why = commands.add_parser("explain", help="why a task runs with the resources it has: every candidate the "
                                               "Orchestrator considered, its predicted figures and score")
    why.add_argument("workflow", help="NAME or NAMESPACE/NAME")
    why.add_argument("task")
    why.add_argument("-o", "--output", choices=["text", "json"], default="text")
    _state_dir_option(why)
    why.set_defaults(func=_cmd_explain)

    runs = commands.add_parser("history", help="finished runs (resources asked for and used, billed core-hours) "
                                               "and the models fitted on them")
    runs.add_argument("kind", nargs="?", help="only runs of this task kind")
    runs.add_argument("--limit", type=int, default=50, metavar="N", help="at most N runs, newest first (default 50)")
    runs.add_argument("-o", "--output", choices=["table", "json"], default="table")
    _state_dir_option(runs)
    runs.set_defaults(func=_cmd_history)

    approve = commands.add_parser("approve", help="approve a workflow's approval step (\"I've done this\")")
    approve.add_argument("workflow")
    approve.add_argument("task")
    approve.add_argument("--set", action="append", metavar="NAME=VALUE",
                         help="a value of the task's parameters (repeat for each); approving a succeeded task with "
                              "other values runs the tasks after it again")
    _state_dir_option(approve)
    approve.set_defaults(func=_cmd_approve)

    reject = commands.add_parser("reject", help="refuse a workflow's approval step: it fails with the reason until "
                                                "approved again")
    reject.add_argument("workflow")
    reject.add_argument("task")
    reject.add_argument("--reason", required=True, help="why, shown in the task's status")
    _state_dir_option(reject)
    reject.set_defaults(func=_cmd_reject)

    cancel = commands.add_parser("cancel", help="stop a workflow's running and pending jobs, or one task's, "
                                                "until its spec changes or it is retried")
    cancel.add_argument("workflow", help="workflow name (or namespace/name)")
    cancel.add_argument("task", nargs="?", help="only this task (default: every task that has not finished)")
    _state_dir_option(cancel)
    cancel.set_defaults(func=_cmd_cancel)

    retry = commands.add_parser("retry", help="run a Failed or Cancelled task again (one new attempt)")
    retry.add_argument("workflow", help="workflow name (or namespace/name)")
    retry.add_argument("task")
    _state_dir_option(retry)
    retry.set_defaults(func=_cmd_retry)

    rerun = commands.add_parser("rerun", help="run a Failed or Cancelled task again, as retry does (a Succeeded "
                                              "one reruns when its spec or inputs change in the source)")
    rerun.add_argument("workflow", help="workflow name (or namespace/name)")
    rerun.add_argument("task")
    _state_dir_option(rerun)
    rerun.set_defaults(func=_cmd_rerun)

    for verb, what in (("suspend", "hold a workflow's pending jobs and submit nothing new"),
                       ("resume", "release a suspended workflow")):
        pause = commands.add_parser(verb, help=f"{what}: prints the spec.suspend edit to commit (the source is the "
                                               "truth), or the kubectl patch of a Kubernetes workflow")
        pause.add_argument("workflow", help="workflow name (or namespace/name)")
        _state_dir_option(pause)
        pause.set_defaults(func=_cmd_suspend)

    diff = commands.add_parser("diff", help="what a push would change against the stored state (exit 1 on changes)")
    _source_options(diff)
    diff.add_argument("--branch", metavar="B", help="Git branch (default: the repository's HEAD)")
    diff.add_argument("--revision", metavar="R", help="read this Git commit, tag or branch (main~1, HEAD~2 too)")
    diff.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    _state_dir_option(diff)
    diff.set_defaults(func=_cmd_diff)

    serve = commands.add_parser("serve", help="the web dashboard: workflows (those waiting for a person first), "
                                             "their DAGs, tasks and events, and approvals")
    serve.add_argument("--address", default="127.0.0.1",
                       help="listen on this address (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8080, help="listen on this port (default 8080; 0: any free port)")
    serve.add_argument("--allow-approve", action="store_true",
                       help="let the pages approve tasks, for requests that present the token (off by default)")
    serve.add_argument("--token-file", metavar="FILE", help="the token approving needs (a bearer token or the form's)")
    serve.add_argument("--source", metavar="PATH", help="manifest file or folder holding the SlurmClusters the jobs "
                                                        "ran on: the pages then show each task's output")
    _state_dir_option(serve)
    serve.set_defaults(func=_cmd_serve)

    dev = commands.add_parser("dev-cluster", help="a single-node Slurm on this machine, for trying things out")
    dev.add_argument("action", choices=["up", "down", "status"])
    dev.add_argument("--dir", help="where its configuration, state and logs live")
    dev.set_defaults(func=_cmd_dev_cluster)
    for command in dict.fromkeys(commands.choices.values()):  # aliases name the same parser
        _log_options(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(level=args.log_level, log_format=args.log_format, stream=sys.stderr)
    return int(args.func(args))

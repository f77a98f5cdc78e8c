"""The ``reconciler`` command line: argument parsing and wiring only.

Each sub-command hands over to the module that owns the work; nothing here decides anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__


def _cmd_validate(args: argparse.Namespace) -> int:
    from .manifests import load_paths
    from .resolve import resolve

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


def _cmd_crds(args: argparse.Namespace) -> int:
    from .api.crds import render_crds_yaml, write_crds

    if args.write:
        for path in write_crds(Path(args.write)):
            print(f"wrote {path}")
    else:
        sys.stdout.write(render_crds_yaml())
    return 0


def _cmd_dev_cluster(args: argparse.Namespace) -> int:
    from . import devcluster

    directory = Path(args.dir) if args.dir else None
    return devcluster.run(args.action, directory)


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

    dev = commands.add_parser("dev-cluster", help="a single-node Slurm on this machine, for trying things out")
    dev.add_argument("action", choices=["up", "down", "status"])
    dev.add_argument("--dir", help="where its configuration, state and logs live")
    dev.set_defaults(func=_cmd_dev_cluster)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))

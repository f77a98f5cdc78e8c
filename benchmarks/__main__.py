"""``scripts/bench``: every benchmark of the reconciler, as one command that prints a table and
writes the figures as JSON.

  --tick    the cost of a tick as ratios to loading the same manifest (benchmarks/tick.py)
  --loop    the loop's own CPU time, RSS and status size, no Slurm (benchmarks/loop.py)
  --scale   200 workflows of 50 tasks in one loop, Slurm commands per tick (benchmarks/scale.py)
  --floor   the reconciler against plain sbatch on the dev cluster, and push -> first sbatch
            (benchmarks/cluster.py; needs root, and runs under the lock the tests share it by)

Without any of them, all of them run, the 30,000-element floor case excepted (``--big`` adds it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import loop, scale, tick

RESULTS = Path(__file__).resolve().parent / "results"
LOCK = "/tmp/slurm-tests.lock"


def machine() -> dict[str, object]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def print_loop(rows: list[dict[str, Any]]) -> None:
    print("\nThe loop's own cost (one tick, no Slurm; goals: <= 20 ms CPU per 10,000 active tasks, "
          "<= 150 MB RSS at 30,000 elements, array status <= 2 KB)")
    print("  steady: a tick in which no job changed; minute: the tick in which running jobs' time so far")
    print("  (counted to the whole minute) moves on, once a minute")
    print(f"  {'case':42} {'first tick ms':>13} {'µs/task':>9} {'steady tick ms':>14} {'minute ms':>10} "
          f"{'peak RSS MB':>12} {'status B':>9}")
    for row in rows:
        print(f"  {row['case']:42} {row['tick_cpu_ms']:13.1f} {row['per_task_us']:9.2f} {row['steady_cpu_ms']:14.1f} "
              f"{row['minute_cpu_ms']:10.1f} {row['peak_rss_mb']:12.1f} {row.get('array_status_bytes', ''):>9}")


def print_scale(result: dict[str, Any]) -> None:
    print(f"\n{result['workflows']} workflows of {result['tasks_per_workflow']} tasks in one loop "
          f"({result['jobs']} jobs; {result['succeeded']} succeeded)")
    for row in result["ticks"]:
        commands = ", ".join(f"{name} {count}" for name, count in row["commands"].items())
        print(f"  {row['tick']:20} CPU {row['cpu_s']:7.2f}s  wall {row['wall_s']:7.2f}s  {commands}")


def print_floor(result: dict[str, Any]) -> None:
    print("\nAgainst the floor (plain sbatch + afterok, waiting on squeue), on the dev cluster; medians.")
    print("  run --until-done: a process started for the workflow; running loop: the workflow dropped")
    print("  into the folder of a loop already running, until its status says Succeeded; each run starts")
    print("  at a random phase of slurmctld's one-second scheduling cadence")
    print(f"  {'workflow':48} {'runs':>4} {'floor s':>8} {'--until-done s':>15} {'ratio':>6} "
          f"{'running loop s':>15} {'ratio':>6}")
    for row in result["floor"]:
        running = (f"{row['running_s']:15.2f} {row['running_ratio']:6.2f}" if "running_s" in row
                   else f"{'-':>15} {'-':>6}")
        print(f"  {row['workflow']:48} {row['runs']:4} {row['floor_s']:8.2f} {row['reconciler_s']:15.2f} "
              f"{row['ratio']:6.2f} {running}")
        means = [f"--until-done {row['ratio_of_means']:.3f}"]
        if "running_ratio_of_means" in row:
            means.append(f"running loop {row['running_ratio_of_means']:.3f}")
        print(f"  {'':48} ratios of the means: {', '.join(means)}")
        if "running_loop_busy" in row:
            spent = row["running_loop_busy"]
            print(f"  {'':48} the running loop's median run: {spent.get('ticks', 0):.0f} ticks, "
                  f"{spent.get('tick_s', 0):.2f}s in them; "
                  + ", ".join(f"{key[:-2]} {value:.2f}s" for key, value in sorted(spent.items())
                              if key.endswith("_s") and key != "tick_s"))
    push = result.get("push_to_sbatch")
    if push:
        print(f"  git push -> first sbatch: median {push['median_s']:.3f}s of {push['runs']} "
              f"({', '.join(f'{s:.3f}' for s in push['all_s'])})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tick", action="store_true")
    parser.add_argument("--loop", action="store_true")
    parser.add_argument("--scale", action="store_true")
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--big", action="store_true", help="with --floor: the 30,000-element case too (minutes)")
    parser.add_argument("--shapes", help="with --floor: comma-separated, of chain,fan100,fan1000,array30000")
    parser.add_argument("--runs", type=int, default=3, help="runs of each floor case, median taken (default 3)")
    parser.add_argument("--push-runs", type=int, default=5, help="pushes timed (0: none; default 5)")
    parser.add_argument("--interval", type=float, help="the reconciler's --interval in the floor cases "
                        "(default: run's own default)")
    parser.add_argument("--workflows", type=int, default=200, help="--scale: workflows (default 200)")
    parser.add_argument("--tasks", type=int, default=50, help="--scale: tasks of each (default 50)")
    parser.add_argument("--json", type=Path, help="where to write the figures (default: benchmarks/results/)")
    parser.add_argument("--no-lock", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    everything = not (args.tick or args.loop or args.scale or args.floor)
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    if args.tick or everything:
        report["tick"] = [{"case": name, "ratio": round(ratio, 3)} for name, ratio in tick.main()]
    if args.loop or everything:
        say("the loop's own cost...")
        report["loop"] = loop.measure()
        print_loop(report["loop"])
    if args.scale or everything:
        say(f"{args.workflows} workflows of {args.tasks} tasks...")
        report["scale"] = scale.measure(args.workflows, args.tasks)
        print_scale(report["scale"])
    if args.floor or everything:
        from . import cluster  # the dev cluster's module needs its packages only here

        shapes = tuple(args.shapes.split(",")) if args.shapes else cluster.QUICK + (("array30000",) if args.big else ())
        if args.no_lock:
            report["floor"] = cluster.measure(shapes, runs=args.runs, push_runs=args.push_runs,
                                              interval=args.interval, say=say)
        else:
            # The dev cluster is shared with the tests: take their lock, and measure in a child
            # that holds it, so nothing else runs jobs meanwhile.
            say(f"waiting for {LOCK}...")
            out = RESULTS / ".floor.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            child = [sys.executable, "-m", "benchmarks", "--floor", "--no-lock", "--json", str(out),
                     "--runs", str(args.runs), "--push-runs", str(args.push_runs), "--shapes", ",".join(shapes),
                     *(("--interval", str(args.interval)) if args.interval is not None else ())]
            subprocess.run(["flock", LOCK, *child], check=True, stdout=subprocess.DEVNULL)
            report["floor"] = json.loads(out.read_text())["floor"]
            out.unlink()
        print_floor(report["floor"])
    path = args.json or RESULTS / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    say(f"\nfigures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

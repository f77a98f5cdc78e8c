"""``reconciler operator``: the control loop with Kubernetes as the source of desired state and
the home of status.

Called by the CLI. Starts the metrics and health endpoint, waits to lead (a Lease), then runs
the same controller as Git mode over the informers' caches, with the Kubernetes publisher
writing status, events and finalizers. Losing the lease stops the loop at once and exits 1 (the
Deployment restarts the pod as a standby), so two replicas never act together.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .. import __version__
from ..engine.controller import Controller
from ..engine.heap import settle_for_the_loop
from ..engine.metrics import Metrics
from ..store.database import Store
from .leader import LeaderElector
from .publisher import KubernetesPublisher
from .source import KubernetesSource

log = logging.getLogger(__name__)

LEASE_NAME = "slurm-reconciler"


def load_client_configuration(kubeconfig: str | None, identity: str) -> k8s.ApiClient:
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig)
    else:
        try:
            k8s_config.load_incluster_config()
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()
    api_client = k8s.ApiClient()
    # Names the operator, and which replica, in the API server's audit log: replicas share one
    # ServiceAccount, so only the user agent tells the leader's calls from a standby's.
    api_client.user_agent = f"slurm-reconciler/{__version__} ({identity})"
    return api_client


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def run_operator(*, namespace: str | None, kubeconfig: str | None, state_dir: Path, interval: float,
                 metrics_port: int | None, lease_namespace: str | None, identity: str | None,
                 metrics_address: str = "0.0.0.0", group_label: str | None = None) -> int:
    identity = identity or default_identity()
    api_client = load_client_configuration(kubeconfig, identity)
    custom = k8s.CustomObjectsApi(api_client)
    core = k8s.CoreV1Api(api_client)
    metrics = Metrics(stale_after=max(60.0, interval * 10), group_label=group_label)
    # In a pod the kubelet's probes and Prometheus reach the pod's address: all interfaces by default.
    server = metrics.serve(port=metrics_port, host=metrics_address) if metrics_port is not None else None
    stop = threading.Event()
    lost = threading.Event()
    controller: Controller | None = None

    def request_stop(signum: int, _frame: object) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()
        if controller is not None:
            controller.request_stop()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    lease_ns = lease_namespace or os.environ.get("POD_NAMESPACE") or namespace or "default"
    elector = LeaderElector(k8s.CoordinationV1Api(api_client), name=LEASE_NAME, namespace=lease_ns,
                            identity=identity)
    source = KubernetesSource(custom, namespace=namespace, core=core)
    store = Store(state_dir / "state.db")
    try:
        if not elector.acquire(stop):
            return 0
        metrics.became_leader()
        publisher = KubernetesPublisher(custom=custom, core=core, source=source, state_dir=state_dir,
                                        metrics=metrics)
        controller = Controller(source=source, store=store, state_dir=state_dir, interval=interval,
                                publisher=publisher, metrics=metrics)

        def on_lost() -> None:
            lost.set()
            assert controller is not None
            controller.request_stop()

        elector.keep_renewing(on_lost)
        if not source.start():
            log.warning("the caches are not complete yet; the loop starts and they fill in")
        settle_for_the_loop()
        controller.run()
        if lost.is_set():
            log.error("leadership lost: exiting so that only one replica acts")
            return 1
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        elector.stop()
        source.close()
        if controller is not None:
            controller.close()
        store.close()
        if server is not None:
            server.shutdown()

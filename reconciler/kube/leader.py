"""Leader election with a ``coordination.k8s.io`` Lease, so two replicas never act at once.

Called by the operator: ``acquire`` blocks until this replica holds the Lease (or stop is
asked); then a thread renews it, and if a renewal cannot be made before the lease would expire
(the API server unreachable, or another holder took over), ``on_lost`` is called and the
operator stops acting at once. Like client-go's leaderelection: a standby takes over only
after the holder's lease has expired, judged by the renew time it wrote, and every write is an
optimistic update against the Lease's resourceVersion, so two candidates cannot both win.
Uses only get, create and update on Leases.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _as_lease(body: dict[str, Any]) -> k8s.V1Lease:
    # The client serializes a dict body as it is (``sanitize_for_serialization`` passes dicts
    # through); only its type hints ask for a V1Lease.
    return cast(k8s.V1Lease, body)


class LeaderElector:
    def __init__(self, api: k8s.CoordinationV1Api, *, name: str, namespace: str, identity: str,
                 lease_seconds: float = 15.0, renew_seconds: float = 5.0, retry_seconds: float = 2.0) -> None:
        self.api = api
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica leads (True) or ``stop`` is set (False)."""
        announced = False
        while not stop.is_set():
            try:
                if self._try_acquire_or_renew():
                    log.info("leading as %s (lease %s/%s)", self.identity, self.namespace, self.name)
                    return True
            except ApiException as exc:
                log.warning("lease %s/%s: %s %s", self.namespace, self.name, exc.status, exc.reason)
            if not announced:
                log.info("standing by: lease %s/%s is held by another replica", self.namespace, self.name)
                announced = True
            stop.wait(self.retry_seconds)
        return False

    def keep_renewing(self, on_lost: Callable[[], None]) -> None:
        def renew() -> None:
            last_renewal = datetime.now(UTC)
            while not self._stop.wait(self.renew_seconds):
                try:
                    if self._try_acquire_or_renew():
                        last_renewal = datetime.now(UTC)
                        continue
                    log.error("lease %s/%s taken over by another replica", self.namespace, self.name)
                except ApiException as exc:
                    log.warning("renewing lease %s/%s: %s %s", self.namespace, self.name, exc.status, exc.reason)
                    if datetime.now(UTC) - last_renewal < timedelta(seconds=self.lease_seconds):
                        continue
                    log.error("lease %s/%s could not be renewed in time", self.namespace, self.name)
                except Exception:  # a dropped connection: retried until the lease would expire
                    log.exception("renewing lease %s/%s", self.namespace, self.name)
                    if datetime.now(UTC) - last_renewal < timedelta(seconds=self.lease_seconds):
                        continue
                on_lost()
                return

        self._renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        self._renewer.start()

    def stop(self) -> None:
        self._stop.set()

    def _try_acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body: dict[str, Any] = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_seconds),
                         "acquireTime": _micro_time(now), "renewTime": _micro_time(now), "leaseTransitions": 0},
            }
            try:
                self.api.create_namespaced_lease(self.namespace, _as_lease(body))
                return True
            except ApiException as create_error:
                if create_error.status == 409:  # another candidate created it first
                    return False
                raise
        # A Lease without a spec has no holder: it is free to take.
        spec = lease.spec or k8s.V1LeaseSpec()
        # The server always returns an object's metadata; its resourceVersion makes the update safe.
        assert lease.metadata is not None, "a Lease read from the API server has metadata"
        holder = spec.holder_identity
        renewed = _parse(spec.renew_time) or _parse(spec.acquire_time)
        duration = spec.lease_duration_seconds or self.lease_seconds
        expired = renewed is None or now > renewed + timedelta(seconds=duration)
        if holder not in (None, "", self.identity) and not expired:
            return False
        taking_over = holder != self.identity
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": lease.metadata.resource_version},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_seconds),
                         "acquireTime": _micro_time(now) if taking_over else _micro_time(_parse(spec.acquire_time)
                                                                                         or now),
                         "renewTime": _micro_time(now),
                         "leaseTransitions": (spec.lease_transitions or 0) + (1 if taking_over else 0)}}
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, _as_lease(body))
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote it since we read it
                return False
            raise
        if taking_over and holder:
            log.info("took over lease %s/%s from %s", self.namespace, self.name, holder)
        return True

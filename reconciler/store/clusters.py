"""The store's record of the SlurmClusters the loop has connected to, as they were declared.

Part of :class:`reconciler.store.database.Store`. The loop records a cluster each time it opens
a connection to it (a new cluster, or a changed spec); ``reconciler logs`` and the dashboard read
it back to reach the cluster a job ran on without the manifests. Guarantees: the latest declared
spec per name is kept, as the manifest gave it (host, user, key file paths; never a key, which
lives in a file or a Kubernetes Secret); a cluster no longer declared keeps its last record, so
the logs of jobs that ran there stay readable while the cluster is.
"""

from __future__ import annotations

import json
from datetime import datetime

from ..api import SlurmCluster
from .connection import StoreConnection
from .encoding import iso


class ClusterBook(StoreConnection):
    def record_cluster(self, cluster: SlurmCluster, *, now: datetime) -> None:
        resource = json.dumps(cluster.to_wire(), sort_keys=True)
        with self._transaction() as db:
            db.execute("INSERT INTO clusters (name, resource, recorded_at) VALUES (?,?,?) "
                       "ON CONFLICT (name) DO UPDATE SET resource = excluded.resource, "
                       "recorded_at = excluded.recorded_at WHERE clusters.resource != excluded.resource",
                       (cluster.metadata.name, resource, iso(now)))

    def cluster(self, name: str) -> SlurmCluster | None:
        with self._lock:
            row = self._db.execute("SELECT resource FROM clusters WHERE name = ?", (name,)).fetchone()
        return None if row is None else SlurmCluster.model_validate(json.loads(row[0]))

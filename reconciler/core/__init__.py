"""The pure core: ``(desired, observed, stored, now) -> plan`` and everything it needs (task runs,
retries, status and conditions, fingerprints, the plan, the observed facts). Imports no IO
library and nothing from the engine, the sources, Kubernetes or the Slurm transports (checked by
the import-linter contracts in ``pyproject.toml``)."""

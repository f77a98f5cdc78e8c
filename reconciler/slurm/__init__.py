"""The Slurm backend: pure argv builders, output parsers and script rendering, the transports
that run commands locally or over SSH, and the client that batches them per tick."""

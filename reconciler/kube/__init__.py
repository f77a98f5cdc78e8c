"""Kubernetes mode: the operator that reconciles Workflow custom resources onto Slurm."""

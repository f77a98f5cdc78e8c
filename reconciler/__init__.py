"""slurm-reconciler: declarative workflows on Slurm."""

__version__ = "0.1.0"

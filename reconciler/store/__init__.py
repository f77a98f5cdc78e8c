"""The SQLite status and history store: the home of every workflow's status in Git mode, and of
every submission's record in both modes (see ``database``)."""

from .database import Store, StoredWorkflow, state_dir_default

__all__ = ["Store", "StoredWorkflow", "state_dir_default"]

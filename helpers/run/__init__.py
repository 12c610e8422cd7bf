"""The ``grpo-notebooks`` command: run the notebooks into a run folder, checks, progress, report."""

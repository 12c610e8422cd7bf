"""grpo-notebooks: the helper package behind the GRPO notebook suite (one module per stage)."""

__version__ = "0.1.0"

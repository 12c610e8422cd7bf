"""Stages 6-7 (notebooks 06, 07): the SFT warm-up and GRPO training, checkpoints and resume."""

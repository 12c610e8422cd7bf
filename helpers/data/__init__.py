"""Stages 3-4 (notebooks 03, 04): the reasoning format and chat template; GSM8K and synthetic problems."""

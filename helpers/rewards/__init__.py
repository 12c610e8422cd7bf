"""Stage 5 (notebook 05): reward functions with TRL's signature, and the checks around them."""

"""Stage 8 (notebook 08): held-out sets, scoring, base vs SFT vs GRPO tables."""

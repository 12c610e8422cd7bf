"""The live training dashboard (a TrainerCallback), its metrics history and its PNG curves."""

"""Stage 8 (notebook 08): saving adapters and merged models, the reload check, GGUF export."""

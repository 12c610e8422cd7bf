"""Run folders and files that are never half written, never silently damaged, never lost to a full disk."""

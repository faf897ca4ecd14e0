"""The words every layer shares: owner keys and label metadata, durations, user-facing errors, redaction.

A leaf: nothing here imports from the rest of `exporter`, so config/, core/, sources/ and up can all use it.
"""

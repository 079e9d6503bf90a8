"""Reliability harnesses: crash the real worker at chosen steps and check what survives."""

"""Runnable examples built on statekit (not part of the installed package)."""

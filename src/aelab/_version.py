"""The version of aelab, on the ground floor (every writer records it)."""

__version__ = "0.2.0"

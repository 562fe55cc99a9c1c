"""stilts-ds: English intermediate-task training (STILTs) for zero-shot cross-lingual transfer.

Entry point for users is the ``stilts-ds`` command (``stilts_ds.cli``); see README.md.
"""

__version__ = "0.1.0"

"""Backup and restore of a whole instance (``smokehouse backup`` / ``smokehouse restore``)."""

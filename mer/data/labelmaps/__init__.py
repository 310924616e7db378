"""Label maps as CSV tables (package data); see :mod:`mer.data.labels`."""

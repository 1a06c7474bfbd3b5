"""Iceberg equality deletes (placeholder)."""


def plan_with_equality_deletes(scan):
    raise ValueError("PyIceberg does not yet support equality deletes")


def read_with_equality_deletes(scan, tasks, deletes):
    raise NotImplementedError

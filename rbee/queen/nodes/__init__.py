"""Hive lifecycles: local and remote hives, the node registry, SSH, the log relay."""

"""The task path: admission, placement, dispatch, and the worker and hive registries."""

"""A plugin that cannot be imported."""

raise ImportError("this smckit test plugin is broken on purpose")

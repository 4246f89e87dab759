"""Runtime workers, sandbox backends, plugin actors, and the in-sandbox executor."""

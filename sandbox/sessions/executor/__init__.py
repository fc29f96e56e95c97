"""sessions.executor."""

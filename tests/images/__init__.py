"""Tests of the runtime image builder against the real Docker engine."""

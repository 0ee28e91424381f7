"""Hostile-input tests (issue 6 section 2): fuzzed frames, hostile feeds, hostile API clients."""

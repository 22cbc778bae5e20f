"""Test helpers: polling with deadlines, running dagctl, process cleanup."""

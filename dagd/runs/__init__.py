"""Runs: the run record, its status lifecycle, and the run worker that executes a job."""

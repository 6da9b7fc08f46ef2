"""Measurement: timing (latency), results schema, sweeps over runners, plots, regression gate, fleet report."""

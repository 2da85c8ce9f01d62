"""Probe registry."""

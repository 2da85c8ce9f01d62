"""Paired per-user tests, multiple-comparison control and the significance level every verdict uses."""

ALPHA = 0.05  # the one significance level: probes, verdicts, reports and studies read it from here

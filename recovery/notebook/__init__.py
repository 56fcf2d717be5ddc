"""What the notebooks call: runbook (parameters, runs, reports), charts, and each runbook's steps."""

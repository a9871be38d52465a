"""Where a run's results go: TensorBoard events, metrics.json, the console/run.log."""

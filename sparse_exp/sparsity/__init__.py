"""Masks, scores, layerwise budgets and selection."""

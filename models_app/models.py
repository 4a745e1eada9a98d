"""Feature sets, model versions, training runs and evaluation reports (tables arrive with the training loop)."""

"""Training, evaluation, calibration and the MLflow registry."""

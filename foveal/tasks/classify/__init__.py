"""Image classification: the task (config, data, model, evaluation, report) and its Predictor."""

"""Forecasters for the forecast task.

Every one has the same contract: a window of the past (B, window, features + covariates), scaled, in; the
next `horizon` steps of the first `features` columns (B, horizon, features), in the same scale, out, all at
once (direct multi-step; the task rolls out a horizon-1 model for recursive=true). The window's columns
are the targets first, then the covariates: past inputs the model reads but does not forecast.
Builders take `window: int, horizon: int, features: int = 1, covariates: int = 0` and their own size
arguments.
"""

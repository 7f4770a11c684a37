"""Forecasters for the forecast task.

Every one has the same contract: a window of the past (B, window, features), scaled, in; the next
`horizon` steps (B, horizon, features), in the same scale, out, all at once (direct multi-step).
Builders take `window: int, horizon: int, features: int = 1` and their own size arguments.
"""

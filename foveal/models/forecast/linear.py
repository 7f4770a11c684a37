"""Forecasters on the flattened window: the linear AR(p) written as a network, and an MLP (`window_mlp`).

`ar` is X_(t+k) = c_k + sum_i phi_(k,i) X_(t-i) for each horizon step k, i = 0..window-1: the direct
multi-step form of the autoregressive model that statsmodels' AutoReg fits by least squares (iterating a
one-step AR(p) also gives a forecast linear in the window, so this class contains it; recursive=true
trains that one-step model and iterates it, as AutoReg does). It is written as the last value plus a
linear correction, which is the same model (the last value is linear in the window), but starts as the
naive forecast, as the networks do. Trained by gradient descent it shows the link: a recurrent network is
this model with a nonlinear state. With covariates it is ARX: their window enters linearly too.
"""

from torch import nn

from ...errors import FovealError
from ...registry import register_model
from .recurrent import linear_highway


class WindowForecaster(nn.Module):
    """`body` maps the flattened (B, window * (F + C)) window to (B, horizon * F); `residual`: added to the
    targets' (the first F columns') last value."""

    def __init__(self, body: nn.Module, horizon: int, features: int, residual: bool):
        super().__init__()
        self.body, self.horizon, self.features, self.residual = body, horizon, features, residual

    def forward(self, x):  # (B, window, F + C) -> (B, horizon, F)
        out = self.body(x.flatten(1)).view(-1, self.horizon, self.features)
        return x[:, -1:, :self.features] + out if self.residual else out


def check_sizes(window: int, horizon: int):
    if window < 1 or horizon < 1:
        raise FovealError(f"window and horizon must be at least 1, got {window} and {horizon}")


@register_model("forecast")
def ar(window: int, horizon: int, features: int = 1, covariates: int = 0, layers: int = 1, hidden: int = 0,
       dropout: float = 0.0, highway: bool = False) -> nn.Module:
    """Linear AR(window) with a constant, one set of coefficients per horizon step (ARX with covariates;
    layers, hidden, dropout and highway do not apply: it is the highway)."""
    check_sizes(window, horizon)
    linear = nn.Linear(window * (features + covariates), horizon * features)
    nn.init.zeros_(linear.weight)  # start as the naive forecast, as the networks do
    nn.init.zeros_(linear.bias)
    return WindowForecaster(linear, horizon, features, residual=True)


@register_model("forecast", name="window_mlp")  # not "mlp": classify has one, and create_model("mlp")
def mlp(window: int, horizon: int, features: int = 1, covariates: int = 0, layers: int = 1, hidden: int = 64,
        dropout: float = 0.0, highway: bool = True) -> nn.Module:
    """`layers` hidden layers of `hidden` ReLU units on the flattened window, predicting a correction to
    the last value, with a linear highway beside them (as the recurrent models; see recurrent.py)."""
    check_sizes(window, horizon)
    parts, width = [], window * (features + covariates)
    for _ in range(layers):
        parts += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    head = nn.Linear(width, horizon * features)
    nn.init.zeros_(head.weight)  # start as the naive forecast
    nn.init.zeros_(head.bias)
    body = nn.Sequential(*parts, head)
    highway = WithHighway(body, linear_highway(window, horizon, features, covariates)) if highway else None
    return WindowForecaster(highway or body, horizon, features, residual=True)


class WithHighway(nn.Module):
    """body(x) + highway(x), both on the flattened window."""

    def __init__(self, body: nn.Module, highway: nn.Module):
        super().__init__()
        self.body, self.highway = body, highway

    def forward(self, x):  # (B, window * (F + C)) -> (B, horizon * F)
        return self.body(x) + self.highway(x)

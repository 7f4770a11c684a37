"""Recurrent forecasters on torch's nn.RNN, nn.LSTM and nn.GRU: an encoder reads the window step by step,
a linear head turns its last state into every horizon step at once.

The head predicts a correction to the naive forecast (the window's last value repeated), not the values
themselves: an untrained model starts as the naive forecast rather than at random, and a series that
trends beyond the levels seen in training (CO2) is still forecast relative to where it stands now.
With `highway` (the default) a linear AR(window) term is added beside the network, as LSTNet does (Lai et
al. 2018): the network then only learns what the linear model misses, and in a CPU minute it reaches the
AutoReg baseline it otherwise approaches slowly (on the synthetic series, 30 epochs: MASE 0.68 with it,
0.88-1.0 without). highway=false gives the plain network.
"""

from torch import nn

from ...errors import FovealError
from ...registry import register_model


class RecurrentForecaster(nn.Module):
    """`encoder` (batch_first nn.RNN / LSTM / GRU) over the window, its last layer's final state (both
    directions' for a bidirectional encoder) -> dropout -> linear -> horizon x features, plus the targets'
    last value (the encoder reads `features` targets and any covariates after them)."""

    def __init__(self, encoder: nn.RNNBase, horizon: int, features: int, dropout: float = 0.0,
                 highway: nn.Module | None = None):
        super().__init__()
        self.highway = highway
        self.encoder, self.horizon, self.features = encoder, horizon, features
        directions = 2 if encoder.bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(directions * encoder.hidden_size, horizon * features)
        nn.init.zeros_(self.head.weight)  # start as the naive forecast
        nn.init.zeros_(self.head.bias)

    def forward(self, x):  # (B, window, F) -> (B, horizon, F)
        _, state = self.encoder(x)
        hidden = state[0] if isinstance(state, tuple) else state  # an LSTM's (h, c): h
        directions = 2 if self.encoder.bidirectional else 1
        last = hidden[-directions:].transpose(0, 1).flatten(1)  # the last layer's final state: (B, directions * hidden)
        correction = self.head(self.dropout(last)).view(-1, self.horizon, self.features)
        if self.highway is not None:  # (B, window * (F + C)) -> (B, horizon * F)
            correction = correction + self.highway(x.flatten(1)).view(-1, self.horizon, self.features)
        return x[:, -1:, :self.features] + correction


def linear_highway(window: int, horizon: int, features: int, covariates: int = 0) -> nn.Linear:
    """LSTNet's highway (Lai et al. 2018): a linear AR(window) term beside the network, zero at the start
    (on the covariates' window too: an ARX term)."""
    layer = nn.Linear(window * (features + covariates), horizon * features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def recurrent(kind, window: int, horizon: int, features: int, covariates: int, layers: int, hidden: int,
              dropout: float, highway: bool, bidirectional: bool = False) -> RecurrentForecaster:
    if window < 1 or horizon < 1:
        raise FovealError(f"window and horizon must be at least 1, got {window} and {horizon}")
    encoder = kind(features + covariates, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                   dropout=dropout if layers > 1 else 0.0)  # torch applies it between layers only
    return RecurrentForecaster(encoder, horizon, features, dropout,
                               linear_highway(window, horizon, features, covariates) if highway else None)


@register_model("forecast")
def rnn(window: int, horizon: int, features: int = 1, covariates: int = 0, layers: int = 1,
        hidden: int = 64, dropout: float = 0.0, highway: bool = True) -> nn.Module:
    """Elman RNN (tanh): the plainest recurrence, X_t's state from X_(t-1)'s; fades over long windows."""
    return recurrent(nn.RNN, window, horizon, features, covariates, layers, hidden, dropout, highway)


@register_model("forecast")
def lstm(window: int, horizon: int, features: int = 1, covariates: int = 0, layers: int = 1,
         hidden: int = 64, dropout: float = 0.0, highway: bool = True) -> nn.Module:
    """LSTM (Hochreiter and Schmidhuber 1997): gated memory cells that keep a season's worth of steps."""
    return recurrent(nn.LSTM, window, horizon, features, covariates, layers, hidden, dropout, highway)


@register_model("forecast")
def gru(window: int, horizon: int, features: int = 1, covariates: int = 0, layers: int = 1,
        hidden: int = 64, dropout: float = 0.0, highway: bool = True) -> nn.Module:
    """GRU (Cho et al. 2014): the LSTM's gating with one state and a quarter fewer weights."""
    return recurrent(nn.GRU, window, horizon, features, covariates, layers, hidden, dropout, highway)


@register_model("forecast")
def bilstm(window: int, horizon: int, features: int = 1, covariates: int = 0, layers: int = 1,
           hidden: int = 64, dropout: float = 0.0, highway: bool = True) -> nn.Module:
    """Bidirectional LSTM encoder over the window (the window is all past, so reading it backwards too is
    fair): the head sees the forward pass's last state and the backward pass's."""
    return recurrent(nn.LSTM, window, horizon, features, covariates, layers, hidden, dropout, highway,
                     bidirectional=True)

"""How a network learns, in small numbers: a neuron's output, one backpropagation step through a fully
connected network (torch autograd, and the chain rule written out beside it), updates per epoch of
mini-batches (torch's BatchSampler, which the library's loaders use)."""

import re
from dataclasses import dataclass

import torch
from torch.utils.data import BatchSampler, SequentialSampler

from ...errors import FovealError, did_you_mean
from .ops import number

ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
# each activation's derivative from its output (and input, for relu), as the chain rule prints it
SLOPES = {"sigmoid": ("out(1 - out)", lambda net, out: out * (1 - out)),
          "tanh": ("1 - out^2", lambda net, out: 1 - out**2),
          "relu": ("1 if net > 0 else 0", lambda net, out: (net > 0).to(net.dtype))}
# Matt Mazur's "A Step by Step Backpropagation Example": the 2-2-2 network the defaults reproduce
TEXTBOOK = {"layers": "2,2,2", "x": "0.05,0.10", "target": "0.01,0.99",
            "w": "0.15,0.20,0.25,0.30,0.40,0.45,0.50,0.55", "b": "0.35,0.60", "lr": 0.5}


def parse_numbers(text: str, key: str, count: int | None = None, what: str = "") -> torch.Tensor:
    """'1, 2 3' -> a (n,) float64 tensor; `count` the number expected, `what` says what they are."""
    values = [number(value, key, "") for value in re.split(r"[,\s]+", str(text).strip()) if value]
    if not values or (count is not None and len(values) != count):
        raise FovealError(f"{key}: expected {count or 'some'} number{'s' * (count != 1)}{what}, got {len(values)}")
    return torch.tensor(values, dtype=torch.float64)


def check_activation(name: str, choices) -> None:
    if name not in choices:
        raise FovealError(f"activation: unknown activation '{name}'{did_you_mean(name, choices)}; "
                          f"choose from {', '.join(choices)}")


def neuron(weights: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, activation: str = "sigmoid"):
    """(z, output) of K neurons: z = weights (K, n) @ x (n,) + bias (K,), output = activation(z); softmax
    normalises over the K neurons, the others act on each."""
    check_activation(activation, (*ACTIVATIONS, "softmax"))
    z = torch.nn.functional.linear(x, weights, bias)
    return z, torch.softmax(z, 0) if activation == "softmax" else ACTIVATIONS[activation](z)


def updates_per_epoch(n: int, batch: int, drop_last: bool = False) -> int:
    """Weight updates in one pass over n examples: the batches torch's BatchSampler makes."""
    for key, value in (("n", n), ("batch", batch)):
        if value < 1:
            raise FovealError(f"{key}: expected an integer >= 1, got {value}")
    return len(BatchSampler(SequentialSampler(range(n)), batch, drop_last))


@dataclass
class Backprop:
    """One gradient step of a fully connected network with squared error E = sum 1/2 (target - out)^2.
    Lists run over the layers after the input (weights (out, in), biases (out,) or (1,): one per layer)."""
    sizes: list[int]
    activation: str
    x: torch.Tensor
    target: torch.Tensor
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    lr: float
    nets: list[torch.Tensor]
    outs: list[torch.Tensor]
    errors: torch.Tensor  # (outputs,) 1/2 (target - out)^2
    dE_dout: list[torch.Tensor]  # the chain rule, layer by layer from the output back
    dout_dnet: list[torch.Tensor]
    weight_grads: list[torch.Tensor]  # the chain rule's dE/dW (out, in)
    bias_grads: list[torch.Tensor]
    autograd_weights: list[torch.Tensor]  # torch autograd's
    autograd_biases: list[torch.Tensor]
    error_after: float  # E with the updated weights and biases
    error_kept_biases: float  # E with the updated weights and the biases as they were

    def inputs(self, layer: int) -> torch.Tensor:
        """What layer `layer` (0-based) reads: x or the previous layer's outputs."""
        return self.x if layer == 0 else self.outs[layer - 1]

    def updated(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return ([w - self.lr * g for w, g in zip(self.weights, self.autograd_weights)],
                [b - self.lr * g for b, g in zip(self.biases, self.autograd_biases)])

    def largest_difference(self) -> float:
        """How far autograd's gradients are from the chain rule's."""
        pairs = [*zip(self.weight_grads, self.autograd_weights), *zip(self.bias_grads, self.autograd_biases)]
        return max(float((a - b).abs().max()) for a, b in pairs)


def split_parameters(sizes: list[int], w: torch.Tensor, b: torch.Tensor):
    """Flat w (layer by layer, each unit's incoming weights in turn: Mazur's w1..w8) and b (one per layer, or
    one per unit) -> lists of (out, in) and (out,) or (1,) tensors."""
    shapes = list(zip(sizes[1:], sizes[:-1]))
    needed = sum(o * i for o, i in shapes)
    if len(w) != needed:
        products = " + ".join(f"{i}*{o}" for o, i in shapes)
        raise FovealError(f"w: {len(w)} numbers for layers {','.join(map(str, sizes))}, which need {needed} "
                          f"({products}: each unit's incoming weights, layer by layer)")
    units = sum(sizes[1:])
    if len(b) not in (len(shapes), units):
        raise FovealError(f"b: {len(b)} numbers; give one per layer ({len(shapes)}) or one per unit ({units})")
    weights = list(torch.split(w, [o * i for o, i in shapes]))
    biases = list(torch.split(b, [1] * len(shapes) if len(b) == len(shapes) else sizes[1:]))
    return [weight.reshape(o, i) for weight, (o, i) in zip(weights, shapes)], biases


def forward(weights, biases, x, activation):
    nets, outs = [], []
    for weight, bias in zip(weights, biases):
        nets.append(weight @ x + bias)
        x = ACTIVATIONS[activation](nets[-1])
        outs.append(x)
    return nets, outs


def backprop(sizes: list[int], x, target, w, b, lr: float = 0.5, activation: str = "sigmoid") -> Backprop:
    """One step of gradient descent on E = sum 1/2 (target - out)^2, every unit `activation` (sigmoid, tanh,
    relu). sizes: units per layer, input first; w, b: flat as split_parameters reads them."""
    check_activation(activation, ACTIVATIONS)
    if len(sizes) < 2 or min(sizes) < 1:
        raise FovealError(f"layers: expected two or more sizes >= 1 (inputs, ..., outputs), got {sizes}")
    x, target = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    for key, values, size in (("x", x, sizes[0]), ("target", target, sizes[-1])):
        if len(values) != size:
            raise FovealError(f"{key}: {len(values)} numbers for the {size} {'inputs' if key == 'x' else 'outputs'} "
                              f"of layers={','.join(map(str, sizes))}")
    weights, biases = split_parameters(sizes, torch.as_tensor(w, dtype=torch.float64),
                                       torch.as_tensor(b, dtype=torch.float64))
    params = [p.clone().requires_grad_() for p in (*weights, *biases)]
    nets, outs = forward(params[:len(weights)], params[len(weights):], x, activation)
    errors = 0.5 * (target - outs[-1]) ** 2
    errors.sum().backward()
    grads = [p.grad for p in params]
    nets, outs = [n.detach() for n in nets], [o.detach() for o in outs]

    # the chain rule: dE/dnet = dE/dout * dout/dnet, and a layer's dE/dout gathers the next layer's dE/dnet
    slope = SLOPES[activation][1]
    dE_dout, dout_dnet, weight_grads, bias_grads = [], [], [], []
    upstream = outs[-1] - target
    for layer in reversed(range(len(weights))):
        local = slope(nets[layer], outs[layer])
        delta = upstream * local
        inputs = x if layer == 0 else outs[layer - 1]
        dE_dout.insert(0, upstream)
        dout_dnet.insert(0, local)
        weight_grads.insert(0, torch.outer(delta, inputs))
        bias_grads.insert(0, delta if len(biases[layer]) == len(delta) else delta.sum(0, keepdim=True))
        upstream = weights[layer].T @ delta
    result = Backprop(sizes, activation, x, target, weights, biases, float(lr), nets, outs, errors.detach(),
                      dE_dout, dout_dnet, weight_grads, bias_grads, grads[:len(weights)], grads[len(weights):],
                      0.0, 0.0)
    new_weights, new_biases = result.updated()
    result.error_after = squared_error(new_weights, new_biases, x, target, activation)
    result.error_kept_biases = squared_error(new_weights, biases, x, target, activation)
    return result


def squared_error(weights, biases, x, target, activation) -> float:
    return float((0.5 * (target - forward(weights, biases, x, activation)[1][-1]) ** 2).sum())

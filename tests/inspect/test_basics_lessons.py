"""`foveal basics` past the first lectures: a neuron, backpropagation, mini-batches, IoU, NMS, AP and YOLO's
output, each printed result checked against an independent computation (numpy by hand, torchvision.ops,
scikit-learn, the VOC 11-point rule), and each user mistake's whole error line."""

import math

import numpy as np
import pytest
import torch
import torchvision.ops as tv
from sklearn.metrics import average_precision_score

import foveal.cli
from foveal.inspect.basics.learning import TEXTBOOK, backprop

MAZUR = {"w1": 0.149780716, "w2": 0.19956143, "w3": 0.24975114, "w4": 0.29950229,
         "w5": 0.35891648, "w6": 0.408666186, "w7": 0.511301270, "w8": 0.561370121}  # after one step, his post


def cli(capsys, *args):
    """(exit code, stdout, stderr) of foveal.cli.main(['basics', *args])."""
    code = foveal.cli.main(["basics", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def printed(out: str, start: str) -> str:
    """The one printed line that starts with `start` (after indentation)."""
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith(start)]
    assert len(lines) == 1, (start, out)
    return lines[0]


def value_of(line: str) -> float:
    """The number a printed line ends in ('... = 0.35891648', '...; autograd 0.08' -> before the ';')."""
    return float(line.split(";")[0].rsplit("=", 1)[1])


def numpy_step(sizes, x, target, w, b, lr, activation):
    """One gradient step on E = sum 1/2 (target - out)^2 by hand: (E, [dW], [db], [W after], [b after]).
    b: one per layer (shared by its units) or one per unit."""
    f = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}[activation]
    df = {"sigmoid": lambda z, a: a * (1 - a), "tanh": lambda z, a: 1 - a * a, "relu": lambda z, a: (z > 0) * 1.0}
    weights, biases, at, bt = [], [], 0, 0
    shared = len(b) == len(sizes) - 1
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights.append(np.array(w[at:at + n_in * n_out]).reshape(n_out, n_in))
        biases.append(np.full(n_out, b[bt]) if shared else np.array(b[bt:bt + n_out]))
        at, bt = at + n_in * n_out, bt + (1 if shared else n_out)
    acts, nets = [np.array(x, float)], []
    for weight, bias in zip(weights, biases):
        nets.append(weight @ acts[-1] + bias)
        acts.append(f(nets[-1]))
    error = 0.5 * ((np.array(target) - acts[-1]) ** 2).sum()
    grad_w, grad_b = [None] * len(weights), [None] * len(weights)
    delta = (acts[-1] - target) * df[activation](nets[-1], acts[-1])
    for layer in reversed(range(len(weights))):
        grad_w[layer] = np.outer(delta, acts[layer])
        grad_b[layer] = np.array([delta.sum()]) if shared else delta
        if layer:
            delta = (weights[layer].T @ delta) * df[activation](nets[layer - 1], acts[layer])
    new_w = [weight - lr * g for weight, g in zip(weights, grad_w)]
    new_b = [(bias[:1] if shared else bias) - lr * g for bias, g in zip(biases, grad_b)]
    return error, grad_w, grad_b, new_w, new_b


def numbers(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def test_backprop_reproduces_the_textbook_example(capsys):
    code, out, err = cli(capsys, "backprop")
    assert code == 0, err
    assert printed(out, "E_total =") == "E_total = 0.274811083 + 0.0235600256 = 0.298371109"
    assert printed(out, "w5 =") == "w5 = 0.4 - 0.5*0.0821670406 = 0.35891648"
    assert printed(out, "w1 =") == "w1 = 0.15 - 0.5*0.000438567734 = 0.149780716"
    for name, value in MAZUR.items():
        assert value_of(printed(out, f"{name} =")) == pytest.approx(value, abs=1e-8)
    assert printed(out, "dE/dw5 =") == ("dE/dw5 = dE/dout_o1 * dout_o1/dnet_o1 * out_h1 = 0.74136507 * 0.186815602 * "
                                        "0.593269992 = 0.0821670406; autograd 0.0821670406")
    assert printed(out, "net_h1 =") == "net_h1 = w1*i1 + w2*i2 + b1 = 0.15*0.05 + 0.2*0.1 + 0.35 = 0.3775"

    sizes = [2, 2, 2]
    error, grad_w, grad_b, new_w, new_b = numpy_step(sizes, numbers(TEXTBOOK["x"]), numbers(TEXTBOOK["target"]),
                                                     numbers(TEXTBOOK["w"]), numbers(TEXTBOOK["b"]), 0.5, "sigmoid")
    assert error == pytest.approx(0.298371109, abs=1e-9)
    flat = np.concatenate([w.ravel() for w in new_w])
    np.testing.assert_allclose(flat, list(MAZUR.values()), atol=1e-8)
    for i, value in enumerate(flat, 1):
        assert value_of(printed(out, f"w{i} =")) == pytest.approx(value, rel=1e-8)
    for name, grads in (("w", grad_w), ("b", grad_b)):
        for i, value in enumerate(np.concatenate([g.ravel() for g in grads]), 1):
            line = printed(out, f"dE/d{name}{i} =")
            assert value_of(line) == pytest.approx(value, rel=1e-8)  # the chain rule printed
            assert float(line.rsplit("autograd", 1)[1]) == pytest.approx(value, rel=1e-8)
    # Mazur keeps his biases: the error after his step, with his weights and the old biases
    biases_kept = numpy_step(sizes, numbers(TEXTBOOK["x"]), numbers(TEXTBOOK["target"]), list(flat),
                             numbers(TEXTBOOK["b"]), 0.5, "sigmoid")[0]
    assert f"as Mazur's example keeps them: {biases_kept:.9g})" in out


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_backprop_of_any_network_matches_numpy(capsys, activation):
    rng = np.random.default_rng(len(activation))
    sizes = [3, 4, 3, 2]
    w = rng.normal(size=3 * 4 + 4 * 3 + 3 * 2).round(3).tolist()
    b = rng.normal(size=9).round(3).tolist()  # one per unit
    x, target = [0.5, -1.0, 2.0], [0.2, -0.3]
    error, grad_w, grad_b, new_w, new_b = numpy_step(sizes, x, target, w, b, 0.1, activation)
    step = backprop(sizes, x, target, w, b, 0.1, activation)
    assert float(step.errors.sum()) == pytest.approx(error, rel=1e-12)
    for ours, autograd, theirs in zip(step.weight_grads, step.autograd_weights, grad_w):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-12)
        np.testing.assert_allclose(autograd.numpy(), theirs, atol=1e-12)
    for ours, theirs in zip(step.updated()[1], new_b):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-12)

    code, out, err = cli(capsys, "backprop", "layers=3,4,3,2", "x=0.5,-1,2", "target=0.2,-0.3",
                         f"w={','.join(map(str, w))}", f"b={','.join(map(str, b))}", "lr=0.1",
                         f"activation={activation}")
    assert code == 0, err
    assert "net_h2.1 = w13*out_h1.1" in out and "dE/db_o2 = dE/dnet_o2 =" in out
    for i, value in enumerate(np.concatenate([m.ravel() for m in new_w]), 1):
        assert value_of(printed(out, f"w{i} =")) == pytest.approx(value, rel=1e-8, abs=1e-12)
    assert value_of(printed(out, "E_total =")) == pytest.approx(error, rel=1e-8)


def test_neuron(capsys):
    code, out, err = cli(capsys, "neuron", "w=0.01,-0.3,0.2,0.2,0.9", "x=12,0,37,1", "activation=sigmoid")
    assert code == 0, err
    z = 0.01 - 0.3 * 12 + 0.2 * 0 + 0.2 * 37 + 0.9 * 1
    assert out.splitlines()[:2] == ["z = b + w1*x1 + w2*x2 + w3*x3 + w4*x4 = 0.01 + (-0.3)*12 + 0.2*0 + 0.2*37 + 0.9*1",
                                    "  = 0.01 + (-3.6) + 0 + 7.4 + 0.9 = 4.71"]
    assert value_of(printed(out, "sigmoid(z)")) == pytest.approx(1 / (1 + math.exp(-z)), abs=5e-7)

    weights, bias, x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 0.0]]), np.array([0.1, 0.0, 0.2]), np.array([1.0, 2.0])
    logits = weights @ x + bias
    probabilities = np.exp(logits) / np.exp(logits).sum()
    code, out, err = cli(capsys, "neuron", "w=1,2;-1,0.5;0,0", "bias=0.1,0,0.2", "x=1,2", "activation=softmax")
    assert code == 0, err
    for k in range(3):
        assert f" = {logits[k]:.6g}\n" in out
        assert value_of(printed(out, f"p{k + 1} =")) == pytest.approx(probabilities[k], rel=1e-5)
    for activation, expected in (("tanh", math.tanh(-2.5)), ("relu", 0.0)):
        code, out, err = cli(capsys, "neuron", "w=0.5,1", "x=-3", f"activation={activation}")
        assert code == 0 and value_of(out.splitlines()[-1]) == pytest.approx(expected, abs=5e-7), err


@pytest.mark.parametrize("n, batch, epochs, drop_last", [(2000, 4, 10, False), (1000, 64, 3, False),
                                                          (1000, 64, 3, True), (10, 1, 2, False), (10, 20, 1, False)])
def test_minibatch_counts_updates(capsys, n, batch, epochs, drop_last):
    per_epoch = min(n // batch if drop_last else math.ceil(n / batch), n) or 1  # batch > n: one batch of all
    code, out, err = cli(capsys, "minibatch", f"n={n}", f"batch={batch}", f"epochs={epochs}", f"drop_last={drop_last}")
    assert code == 0, err
    assert value_of(printed(out, "updates per epoch").split(":")[0]) == per_epoch
    assert printed(out, "updates in all").endswith(f"= {per_epoch * epochs}")
    if n % batch and batch < n:
        assert f"{n} = {n // batch}*{batch} + {n % batch}" in out
    kind = "batch gradient descent" if batch >= n else "stochastic" if batch == 1 else "mini-batch"
    assert out.splitlines()[0].startswith(f"{n} examples, batch {batch}: {kind}")


def to_xyxy(box, format):
    x, y, w, h = box
    return {"xyxy": box, "xywh": [x, y, x + w, y + h], "cxcywh": [x - w / 2, y - h / 2, x + w / 2, y + h / 2]}[format]


@pytest.mark.parametrize("format", ["xyxy", "xywh", "cxcywh"])
def test_iou_matches_torchvision(capsys, format):
    rng = np.random.default_rng(len(format))
    for _ in range(4):
        a, b = (rng.integers(1, 40, 4).astype(float) for _ in range(2))
        if format == "xyxy":
            a[2:] += a[:2]
            b[2:] += b[:2]
        expected = tv.box_iou(torch.tensor([to_xyxy(list(a), format)]), torch.tensor([to_xyxy(list(b), format)]))
        code, out, err = cli(capsys, "iou", f"a={','.join(f'{v:g}' for v in a)}", f"b={','.join(f'{v:g}' for v in b)}",
                             f"format={format}")
        assert code == 0, err
        assert value_of(printed(out, "IoU =")) == pytest.approx(float(expected), abs=5e-7)
    code, out, _ = cli(capsys, "iou", "a=10,10,50,50", "b=30,30,70,70")
    assert "intersection = 20 * 20 = 400" in out and "union = 1600 + 1600 - 400 = 2800" in out
    assert printed(out, "IoU =") == "IoU = intersection / union = 400 / 2800 = 0.142857"


@pytest.mark.parametrize("agnostic", [False, True])
def test_nms_steps_match_torchvision(capsys, tmp_path, agnostic):
    rng = np.random.default_rng(11)
    corners = rng.uniform(0, 60, (14, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(10, 40, (14, 2))], 1).round(1)
    scores = rng.permutation(14) / 14 + 0.02  # distinct
    classes = rng.choice(["cat", "dog"], 14)
    lines = ["x1,y1,x2,y2,score,class"] + [f"{','.join(f'{v:g}' for v in box)},{s:.6f},{c}"
                                             for box, s, c in zip(boxes, scores, classes)]
    (tmp_path / "boxes.csv").write_text("\n".join(lines) + "\n")
    t_boxes, t_scores = torch.tensor(boxes), torch.tensor(scores.round(6))
    labels = torch.tensor([c == "dog" for c in classes]).long()
    expected = (tv.nms(t_boxes, t_scores, 0.3) if agnostic else tv.batched_nms(t_boxes, t_scores, labels, 0.3)).tolist()

    code, out, err = cli(capsys, "nms", f"boxes={tmp_path / 'boxes.csv'}", "iou=0.3", f"agnostic={agnostic}")
    assert code == 0, err
    assert printed(out, "kept").split(":")[1].split(";")[0].strip() == ", ".join(f"#{i + 1}" for i in expected)
    overlaps = tv.box_iou(t_boxes, t_boxes)
    steps = [line.split() for line in out.split("suppresses (IoU with it)\n")[1].splitlines()[:len(expected)]]
    removed = set()
    for step, kept in zip(steps, expected):
        assert step[1] == f"#{kept + 1}"
        for box, value in zip(step[3::2], step[4::2]):
            i = int(box.strip("#")) - 1
            removed.add(i)
            assert float(value.strip("(),")) == pytest.approx(float(overlaps[kept, i]), abs=5e-5)
            assert overlaps[kept, i] > 0.3 and scores[i] < scores[kept]
            assert agnostic or classes[i] == classes[kept]
    assert removed == set(range(14)) - set(expected)  # each dropped box is charged to one kept box


def voc11_by_hand(precision, recall):
    return sum(max([p for p, r in zip(precision, recall) if r >= k / 10], default=0) for k in range(11)) / 11


def test_ap_table_and_interpolations(capsys):
    scores = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4]
    correct = [1, 1, 0, 1, 0, 0, 1, 0]
    code, out, err = cli(capsys, "ap", f"scores={','.join(map(str, scores[::-1]))}",
                         f"correct={','.join(map(str, correct[::-1]))}", "positives=6")  # ranked by the op
    assert code == 0, err
    tp = np.cumsum(correct)
    precision, recall = tp / np.arange(1, 9), tp / 6
    rows = [line.split() for line in out.split("precision  recall\n")[1].splitlines()[:8]]
    assert [[int(row[3]), int(row[4])] for row in rows] == [[t, k + 1 - t] for k, t in enumerate(tp)]
    np.testing.assert_allclose([[float(row[5]), float(row[6])] for row in rows], np.stack([precision, recall], 1),
                               atol=5e-5)
    assert "recall stops at 0.6667: 2 of 6 objects are never found" in out
    voc11 = float(printed(out, "= (").rsplit("=", 1)[1])
    assert voc11 == pytest.approx(voc11_by_hand(precision, recall), abs=5e-5)
    sklearn = average_precision_score(correct, scores)  # its recall: over the 4 found
    step_line = printed(out, "AP, not interpolated")
    assert f"counts recall over the 4 found only: {sklearn:.4f} = this x 6/4" in step_line
    lines = out.splitlines()
    assert float(lines[lines.index(step_line) + 1].rsplit("=", 1)[1]) == pytest.approx(sklearn * 4 / 6, abs=5e-5)
    envelope = [max(precision[k:]) for k in range(8)]
    all_point = sum(e for e, c in zip(envelope, correct) if c) / 6
    assert "PASCAL VOC 2010 and later" in out and f"= {all_point:.4f}" in out
    thresholds = np.linspace(0, 1, 101)  # COCOeval's rule: the envelope at the first rank reaching each recall
    coco = np.mean([envelope[int(np.argmax(recall >= t))] if recall[-1] >= t else 0 for t in thresholds])
    assert printed(out, "AP, COCO 101-point").endswith(f"= {coco:.4f}")


def test_yolo_output(capsys):
    code, out, err = cli(capsys, "yolo-output")
    assert code == 0, err
    assert printed(out, "YOLOv1:") == "YOLOv1: S x S x (B*5 + C) = 7 x 7 x (2*5 + 20) = 7x7x30 = 1470 numbers"
    assert "10-29 P(class 1..20 | object), shared by the cell's boxes" in out
    code, out, err = cli(capsys, "yolo-output", "grid=13", "boxes=3", "classes=80")
    assert printed(out, "anchor-based").endswith(f"= 13x13x{3 * (5 + 80)} = {13 * 13 * 255} numbers")
    assert "170-174 anchor 3: x, y, w, h, objectness" in out and "175-254 anchor 3: class 1..80 scores" in out


def test_help_lists_the_ops(capsys):
    code, out, _ = cli(capsys, "help")
    for op in ("neuron", "backprop", "minibatch", "iou", "nms", "ap", "yolo-output"):
        assert f"\n  {op:11s} " in out


@pytest.mark.parametrize("args, message", [
    (["neuron", "w=1,2,3", "x=1"], "w: 3 values per neuron for 1 inputs; give the bias first and one weight per "
                                   "input (2 values), or bias= apart"),
    (["neuron", "w=1,2", "x=1", "activation=softmax"], "activation: softmax needs two or more neurons (rows of w "
                                                       "separated by ;)"),
    (["neuron", "w=1,2", "x=1", "activation=sigmod"], "activation: unknown activation 'sigmod' (did you mean "
                                                      "'sigmoid'?); choose from sigmoid, tanh, relu, softmax"),
    (["neuron", "w=1", "x=1", "bias=1,2"], "bias: expected 1 number (one per neuron: w has 1 row(s)), got 2"),
    (["backprop", "x=1,2,3"], "x: 3 numbers for the 2 inputs of layers=2,2,2"),
    (["backprop", "w=1,2"], "w: 2 numbers for layers 2,2,2, which need 8 (2*2 + 2*2: each unit's incoming weights, "
                            "layer by layer)"),
    (["backprop", "b=1,2,3"], "b: 3 numbers; give one per layer (2) or one per unit (4)"),
    (["backprop", "layers=2,2.5,2"], "layers: expected whole numbers of units, got 2,2.5,2"),
    (["minibatch", "n=10", "batch=20", "drop_last=true"], "batch: 20 > n=10 with drop_last=true: no batch is ever "
                                                          "full, nothing is learnt"),
    (["minibatch", "n=10"], "batch: give the examples and the batch size, e.g. n=2000 batch=4"),
    (["iou", "a=1,2,3", "b=1,2,3,4"], "a: expected 4 numbers (x1,y1,x2,y2), got 3"),
    (["iou", "a=1,2,3,4", "b=5,6,3,4"], "b: x2 < x1 in 5,6,3,4"),
    (["iou", "a=1,2,-3,4", "b=1,2,3,4", "format=xywh"], "a: x2 < x1 in 1,2,-3,4 (xywh: negative width)"),
    (["iou", "a=1,2,3,4", "b=1,2,3,4", "format=xyhw"], "format: unknown box format 'xyhw' (did you mean 'xywh'?); "
                                                       "choose from xyxy, xywh, cxcywh"),
    (["nms", "boxes=missing.csv"], "boxes: no such file: missing.csv"),
    (["nms", "boxes=1,2,3,4"], "boxes: box 1: expected 5 or 6 values (x1,y1,x2,y2,score[,class]), got 4"),
    (["nms", "boxes=1,2,3,4,0.5;5,6,1,2,0.4"], "boxes: box 2: x2 < x1 in 5,6,1,2"),
    (["nms", "boxes=1,2,3,4,x"], "boxes: box 1: 'x' is not a number"),
    (["nms", "boxes=1,2,3,4,0.5", "iou=2"], "iou: expected a threshold between 0 and 1, got 2"),
    (["ap", "scores=0.9,0.8", "correct=1"], "correct: 1 value for 2 scores; give one 0 or 1 per detection"),
    (["ap", "scores=0.9,0.8", "correct=1,1", "positives=1"], "positives: 1, but 2 detections are correct; positives "
                                                             "counts every object to find, so at least 2"),
    (["ap", "scores=0.9,a", "correct=1,1"], "scores: 'a' is not a number"),
    (["yolo-output", "grid=0"], "grid: expected an integer >= 1, got 0"),
])
def test_user_mistakes_are_one_whole_line(capsys, args, message):
    code, out, err = cli(capsys, *args)
    assert code == 2 and err == f"foveal: error: {message}\n", err


def test_a_malformed_csv_line_is_named(capsys, tmp_path):
    (tmp_path / "boxes.csv").write_text("x1,y1,x2,y2,score\n1,2,3,4,0.9\n1,2,3,4\n")
    code, _, err = cli(capsys, "nms", f"boxes={tmp_path / 'boxes.csv'}")
    assert code == 2 and err == ("foveal: error: boxes: boxes.csv:3: expected 5 or 6 values "
                                 "(x1,y1,x2,y2,score[,class]), got 4\n")

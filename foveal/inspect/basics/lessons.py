"""The ops of `foveal basics` past the first lectures (a neuron, backpropagation, mini-batches, IoU, NMS, AP,
YOLO's output), each printing its arithmetic with the numbers filled in; commands.py lists them."""

from dataclasses import dataclass
from itertools import product

from ...errors import FovealError
from ...metrics.ranking import (AP_METHODS, COCO_RECALLS, VOC_RECALLS, envelope, interpolated, pr_average_precision,
                                ranked_pr)
from ...ops.boxes import box_area, box_iou
from .detection import FORMAT_FIELDS, nms_steps, parse_box, parse_scored_boxes, yolo_layouts
from .learning import SLOPES, TEXTBOOK, Backprop, backprop, neuron, parse_numbers, updates_per_epoch
from .ops import parse_matrix
from .printing import factor, num


def neuron_command(w="", x="", bias="", activation="sigmoid"):
    """a neuron's output: z = b + sum w_i x_i, then sigmoid, tanh, relu (or softmax over neurons, rows of w by ;);
    w gives the bias first unless bias= does"""
    if not w or not x:
        raise FovealError(f"{'x' if w else 'w'}: give weights and inputs, e.g. w=0.01,-0.3,0.2,0.2,0.9 x=12,0,37,1")
    inputs, weights = parse_numbers(x, "x"), parse_matrix(w, "w")
    neurons = len(weights)
    if bias:
        biases = parse_numbers(bias, "bias", neurons, f" (one per neuron: w has {neurons} row(s))")
        if weights.shape[1] != len(inputs):
            raise FovealError(f"w: {weights.shape[1]} weights per neuron for {len(inputs)} inputs; with bias= give "
                              f"one weight per input")
    elif weights.shape[1] != len(inputs) + 1:
        raise FovealError(f"w: {weights.shape[1]} values per neuron for {len(inputs)} inputs; give the bias first "
                          f"and one weight per input ({len(inputs) + 1} values), or bias= apart")
    else:
        biases, weights = weights[:, 0], weights[:, 1:]
    if activation == "softmax" and neurons < 2:
        raise FovealError("activation: softmax needs two or more neurons (rows of w separated by ;)")
    z, out = neuron(weights, biases, inputs, activation)
    n = len(inputs)
    symbols = " + ".join(["b", *(f"w{i}*x{i}" for i in range(1, n + 1))]) if n <= 4 else f"b + w1*x1 + ... + w{n}*x{n}"
    for k in range(neurons):
        name = f"z{k + 1}" if neurons > 1 else "z"
        terms = " + ".join([num(biases[k])] + [f"{factor(wi)}*{factor(xi)}" for wi, xi in zip(weights[k], inputs)])
        products = " + ".join([num(biases[k])] + [factor(wi * xi) for wi, xi in zip(weights[k], inputs)])
        print(f"{name} = {symbols} = {terms}\n"
              f"{'':{len(name)}} = {products} = {num(z[k])}")
    if activation == "softmax":
        total = " + ".join(f"e^{factor(value)}" for value in z)
        print(f"softmax: p_k = e^z_k / (sum_j e^z_j), sum_j e^z_j = {total} = {num(z.exp().sum())}")
    for k in range(neurons):
        name = f"z{k + 1}" if neurons > 1 else "z"
        rule = {"sigmoid": f"sigmoid({name}) = 1 / (1 + e^-{name}) = 1 / (1 + e^{factor(-z[k])})",
                "tanh": f"tanh({name}) = (e^{name} - e^-{name}) / (e^{name} + e^-{name}) = tanh({num(z[k])})",
                "relu": f"relu({name}) = max(0, {name}) = max(0, {num(z[k])})",
                "softmax": f"p{k + 1} = e^{factor(z[k])} / {num(z.exp().sum())}"}[activation]
        print(f"{rule} = {num(out[k])}")
    return out


def unit_names(sizes: list[int]) -> list[list[str]]:
    """Mazur's names: inputs i1.., one hidden layer h1.., outputs o1..; several hidden layers h1.1, h2.1 ..."""
    hidden = len(sizes) - 2
    names = [[f"i{j}" for j in range(1, sizes[0] + 1)]]
    for layer in range(1, hidden + 1):
        names.append([f"h{layer}.{j}" if hidden > 1 else f"h{j}" for j in range(1, sizes[layer] + 1)])
    return names + [[f"o{j}" for j in range(1, sizes[-1] + 1)]]


D = 9  # backprop's significant digits: Mazur's


@dataclass
class Labels:
    """Mazur's names for a network's numbers: units i1, h1, o1; weights w1.. layer by layer, each unit's incoming
    weights in turn; biases b1, b2 when one per layer, else b_h1, b_o1 ..."""
    units: list[list[str]]  # per layer, the input layer first
    weights: list[list[list[str]]]  # per layer after the input, (out, in)
    biases: list[list[str]]
    shared: list[bool]  # per layer after the input: one bias for all its units

    @classmethod
    def of(cls, step: Backprop) -> "Labels":
        units = unit_names(step.sizes)
        numbers = iter(range(1, sum(weight.numel() for weight in step.weights) + 1))
        weights = [[[f"w{next(numbers)}" for _ in row] for row in weight] for weight in step.weights]
        shared = [len(bias) == 1 and size > 1 for bias, size in zip(step.biases, step.sizes[1:])]
        biases = [[f"b{layer + 1}"] if shared[layer] else [f"b_{unit}" for unit in units[layer + 1]]
                  for layer in range(len(step.weights))]
        return cls(units, weights, biases, shared)

    def inputs(self, layer: int) -> list[str]:
        """What layer `layer` (0-based, after the input) reads: i1.. or out_h1.."""
        return [f"out_{name}" if layer else name for name in self.units[layer]]


def backprop_command(layers=TEXTBOOK["layers"], x=TEXTBOOK["x"], target=TEXTBOOK["target"], w=TEXTBOOK["w"],
                     b=TEXTBOOK["b"], lr=TEXTBOOK["lr"], activation="sigmoid"):
    """one gradient step through a fully connected network (default: Mazur's 2-2-2 example); w layer by layer,
    each unit's incoming weights in turn; b one per layer or per unit"""
    sizes = parse_numbers(layers, "layers")
    if not all(size.is_integer() for size in sizes.tolist()):
        raise FovealError(f"layers: expected whole numbers of units, got {layers}")
    step = backprop([int(size) for size in sizes.tolist()], parse_numbers(x, "x"), parse_numbers(target, "target"),
                    parse_numbers(w, "w"), parse_numbers(b, "b"), lr, activation)
    labels = Labels.of(step)
    print(f"a {'-'.join(map(str, step.sizes))} network of {activation} units, squared error "
          f"E = sum 1/2 (target - out)^2, learning rate {num(lr)}")
    print_forward(step, labels)
    print_backward(step, labels)
    print_update(step, labels)
    return step


def print_forward(step: Backprop, labels: Labels):
    print("forward pass:")
    for layer, (weight, bias) in enumerate(zip(step.weights, step.biases)):
        inputs, ins = step.inputs(layer), labels.inputs(layer)
        for j, unit in enumerate(labels.units[layer + 1]):
            k = 0 if labels.shared[layer] else j
            symbols = " + ".join(f"{labels.weights[layer][j][i]}*{ins[i]}" for i in range(len(inputs)))
            values = " + ".join(f"{factor(weight[j, i], D)}*{factor(inputs[i], D)}" for i in range(len(inputs)))
            print(f"  net_{unit} = {symbols} + {labels.biases[layer][k]} = {values} + {factor(bias[k], D)} = "
                  f"{num(step.nets[layer][j], D)}")
            print(f"  out_{unit} = {step.activation}(net_{unit}) = {num(step.outs[layer][j], D)}")
    for j, unit in enumerate(labels.units[-1]):
        print(f"  E_{unit} = 1/2 (target_{unit} - out_{unit})^2 = 1/2 ({num(step.target[j], D)} - "
              f"{num(step.outs[-1][j], D)})^2 = {num(step.errors[j], D)}")
    sums = f"{' + '.join(num(e, D) for e in step.errors)} = " if len(step.errors) > 1 else ""
    print(f"  E_total = {sums}{num(step.errors.sum(), D)}")


def print_backward(step: Backprop, labels: Labels):
    """Per unit from the output back: dE/dout, dout/dnet, dE/dnet, then each incoming weight's dE/dw."""
    rule = SLOPES[step.activation][0]
    print(f"backward pass: the chain rule, each dE/dw next to torch autograd's (largest difference "
          f"{step.largest_difference():.1e})")
    for layer in reversed(range(len(step.weights))):
        units, ins, inputs = labels.units[layer + 1], labels.inputs(layer), step.inputs(layer)
        last = layer == len(step.weights) - 1
        print(f"  {'output layer' if last else f'hidden layer {layer + 1}'}:")
        for j, unit in enumerate(units):
            upstream, local = step.dE_dout[layer][j], step.dout_dnet[layer][j]
            if last:
                print(f"    dE/dout_{unit} = out_{unit} - target_{unit} = {num(step.outs[layer][j], D)} - "
                      f"{num(step.target[j], D)} = {num(upstream, D)}")
            else:  # the next layer's dE/dnet, each through the weight from this unit
                nexts = labels.units[layer + 2]
                delta = step.dE_dout[layer + 1] * step.dout_dnet[layer + 1]
                symbols = " + ".join(f"dE/dnet_{n}*{labels.weights[layer + 1][k][j]}" for k, n in enumerate(nexts))
                values = " + ".join(f"{factor(delta[k], D)}*{factor(step.weights[layer + 1][k, j], D)}"
                                    for k in range(len(nexts)))
                print(f"    dE/dout_{unit} = {symbols} = {values} = {num(upstream, D)}")
            print(f"    dout_{unit}/dnet_{unit} = {rule.replace('out', f'out_{unit}').replace('net', f'net_{unit}')}"
                  f" = {num(local, D)}")
            print(f"    dE/dnet_{unit} = dE/dout_{unit} * dout_{unit}/dnet_{unit} = {factor(upstream, D)} * "
                  f"{factor(local, D)} = {num(upstream * local, D)}")
            for i, source in enumerate(ins):
                print(f"    dE/d{labels.weights[layer][j][i]} = dE/dout_{unit} * dout_{unit}/dnet_{unit} * {source} = "
                      f"{factor(upstream, D)} * {factor(local, D)} * {factor(inputs[i], D)} = "
                      f"{num(step.weight_grads[layer][j, i], D)}; "
                      f"autograd {num(step.autograd_weights[layer][j, i], D)}")
        for k, bias_name in enumerate(labels.biases[layer]):
            summed = units if labels.shared[layer] else [units[k]]
            print(f"    dE/d{bias_name} = {' + '.join(f'dE/dnet_{unit}' for unit in summed)} = "
                  f"{num(step.bias_grads[layer][k], D)}; autograd {num(step.autograd_biases[layer][k], D)}")


def print_update(step: Backprop, labels: Labels):
    new_weights, new_biases = step.updated()
    lr = num(step.lr)
    print(f"updated, w - {lr} * dE/dw:")
    for layer, weight in enumerate(step.weights):
        for j, i in product(*map(range, weight.shape)):
            print(f"  {labels.weights[layer][j][i]} = {num(weight[j, i], D)} - {lr}*"
                  f"{factor(step.autograd_weights[layer][j, i], D)} = {num(new_weights[layer][j, i], D)}")
        for k, bias_name in enumerate(labels.biases[layer]):
            print(f"  {bias_name} = {num(step.biases[layer][k], D)} - {lr}*"
                  f"{factor(step.autograd_biases[layer][k], D)} = {num(new_biases[layer][k], D)}")
    print(f"E_total after the step = {num(step.error_after, D)} (before: {num(step.errors.sum(), D)}; with the biases "
          f"kept, as Mazur's example keeps them: {num(step.error_kept_biases, D)})")


def minibatch_command(n=0, batch=0, epochs=1, drop_last=False):
    """weight updates per epoch and in all for n examples in batches (batch=n: batch GD, batch=1: stochastic)"""
    if not n or not batch:
        raise FovealError(f"{'batch' if n else 'n'}: give the examples and the batch size, e.g. n=2000 batch=4")
    if epochs < 1:
        raise FovealError(f"epochs: expected an integer >= 1, got {epochs}")
    per_epoch = updates_per_epoch(n, batch, drop_last)
    if per_epoch == 0:
        raise FovealError(f"batch: {batch} > n={n} with drop_last=true: no batch is ever full, nothing is learnt")
    kind = ("batch gradient descent (one batch of every example)" if batch >= n else
            "stochastic gradient descent (one example per update)" if batch == 1 else "mini-batch gradient descent")
    print(f"{n} examples, batch {batch}: {kind}")
    full, rest = divmod(n, batch)
    if batch > n:
        print(f"  batch {batch} > n: the one batch holds all {n} examples")
    if not rest or batch > n:
        print(f"updates per epoch = {n} / {batch} = {per_epoch}" if not rest else f"updates per epoch = {per_epoch}")
    elif drop_last:
        print(f"updates per epoch = floor({n} / {batch}) = {per_epoch}: {n} = {full}*{batch} + {rest}, and "
              f"drop_last=true drops the last {rest} examples (others each epoch, when shuffled)")
    else:
        print(f"updates per epoch = ceil({n} / {batch}) = {per_epoch}: {n} = {full}*{batch} + {rest}, the last "
              f"batch has {rest} examples (drop_last=true: {full} updates)")
    total = per_epoch * epochs
    print(f"updates in all = {per_epoch} * {epochs} epoch{'s' * (epochs != 1)} = {total}")
    return total


def iou_command(a="", b="", format="xyxy"):
    """the IoU of two boxes a= and b= in format=xyxy (x1,y1,x2,y2), xywh (x,y,w,h) or cxcywh (cx,cy,w,h)"""
    if not a or not b:
        raise FovealError(f"{'b' if a else 'a'}: give both boxes, e.g. a=10,10,50,50 b=30,30,70,70")
    box_a, box_b = parse_box(a, "a", format), parse_box(b, "b", format)
    for name, text, box in (("a", a, box_a), ("b", b, box_b)):
        xyxy = ",".join(num(v) for v in box.tolist())
        print(f"{name} = {text} ({format}: {FORMAT_FIELDS[format]})" + (f" = {xyxy} as x1,y1,x2,y2"
                                                                         if format != "xyxy" else ""))
    sides = []
    for axis, (low, high) in (("x", (0, 2)), ("y", (1, 3))):
        start, end = max(box_a[low], box_b[low]), min(box_a[high], box_b[high])
        sides.append(max(float(end - start), 0.0))
        print(f"overlap in {axis}: max({num(box_a[low])}, {num(box_b[low])}) = {num(start)} to "
              f"min({num(box_a[high])}, {num(box_b[high])}) = {num(end)}: {num(sides[-1])}"
              + (" (none)" if end <= start else ""))
    inter = sides[0] * sides[1]
    area_a, area_b = (float(box_area(box[None])[0]) for box in (box_a, box_b))
    print(f"intersection = {num(sides[0])} * {num(sides[1])} = {num(inter)}")
    for name, box, area in (("a", box_a, area_a), ("b", box_b, area_b)):
        print(f"area {name} = {num(box[2] - box[0])} * {num(box[3] - box[1])} = {num(area)}")
    union = area_a + area_b - inter
    print(f"union = {num(area_a)} + {num(area_b)} - {num(inter)} = {num(union)}")
    iou = float(box_iou(box_a[None], box_b[None])[0, 0])
    print(f"IoU = intersection / union = {num(inter)} / {num(union)} = {num(iou)}")
    return iou


def nms_command(boxes="", iou=0.5, agnostic=False, format="xyxy"):
    """non-maximum suppression step by step; boxes= inline (x1,y1,x2,y2,score[,class];...) or a CSV file"""
    scored = parse_scored_boxes(boxes, "boxes", format)
    steps = nms_steps(scored, iou, agnostic)
    count = len(scored.scores)
    scope = ("all boxes together (no classes given)" if scored.classes is None else "across classes" if agnostic
             else "class by class (agnostic=true: across classes)")
    print(f"{count} boxes; NMS keeps the highest score and removes the boxes overlapping it by IoU > {num(iou)}, "
          f"{scope}, then repeats on what is left")
    rows = [[f"#{i + 1}", *(num(v) for v in scored.boxes[i].tolist()), num(scored.scores[i])]
            + ([scored.classes[i]] if scored.classes else []) for i in range(count)]
    header = ["box", "x1", "y1", "x2", "y2", "score"] + (["class"] if scored.classes else [])
    print_table([header, *rows])
    print_table([["step", "keeps (score)", "suppresses (IoU with it)"]]
                + [[str(n), f"#{step.taken + 1} ({num(scored.scores[step.taken])})",
                    ", ".join(f"#{i + 1} ({value:.4f})" for i, value in step.suppressed) or "-"]
                   for n, step in enumerate(steps, 1)])
    kept = [step.taken for step in steps]
    removed = sorted(i for step in steps for i, _ in step.suppressed)
    print(f"kept {len(kept)} of {count}: {', '.join(f'#{i + 1}' for i in kept)}"
          + (f"; suppressed: {', '.join(f'#{i + 1}' for i in removed)}" if removed else ""))
    return kept


def print_table(rows: list[list[str]]):
    """Columns right-aligned but the last, which may hold text of any length."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        print("  " + "  ".join([cell.rjust(width) for cell, width in zip(row, widths)] + [row[-1]]))


def ap_command(scores="", correct="", positives=0):
    """average precision of detections ranked by score (correct=1 or 0 each; positives= objects to find,
    default: the correct ones): VOC 11-point, all-point, COCO 101-point"""
    if not scores or not correct:
        raise FovealError(f"{'correct' if scores else 'scores'}: give one score and one correct=0/1 per detection")
    values = parse_numbers(scores, "scores")
    hits = parse_numbers(correct, "correct").numpy()
    pr = ranked_pr(values.numpy(), hits, positives or None)
    print(f"{len(values)} detections ranked by score; {pr.positives} objects to find (positives"
          f"{'' if positives else ': the correct detections'}); precision = TP / rank, recall = TP / {pr.positives}")
    print_table([["rank", "score", "correct", "TP", "FP", "precision", "recall"]]
                + [[str(k + 1), num(values[i]), "1" if hit else "0", str(tp), str(fp), f"{p:.4f}", f"{r:.4f}"]
                   for k, (i, hit, tp, fp, p, r) in enumerate(zip(pr.order, pr.correct, pr.tp, pr.fp, pr.precision,
                                                                  pr.recall))])
    if pr.tp[-1] < pr.positives:
        print(f"recall stops at {num(pr.recall[-1], 4)}: {pr.positives - pr.tp[-1]} of {pr.positives} objects are "
              "never found, and precision counts as 0 beyond")
    best = interpolated(pr, VOC_RECALLS)
    hits_at = [k for k in range(len(pr.correct)) if pr.correct[k]]
    at_hits = envelope(pr.precision)[hits_at]
    ap = {method: pr_average_precision(pr, method) for method in AP_METHODS}
    print(f"AP, VOC 11-point (PASCAL VOC 2007): the mean of the best precision at recall >= 0, 0.1, ..., 1\n"
          f"  = ({' + '.join(f'{p:.4f}' for p in best)}) / 11 = {ap['voc11']:.4f}")
    print(f"AP, all-point (PASCAL VOC 2010 and later): each recall step 1/{pr.positives} times the best precision "
          f"at that recall or beyond\n  = 1/{pr.positives} * ({' + '.join(f'{p:.4f}' for p in at_hits) or '0'}) = "
          f"{ap['all']:.4f}")
    print(f"AP, COCO 101-point (COCO, for each IoU threshold .50:.05:.95): the mean of that best precision at recall "
          f"0, 0.01, ..., 1 ({len(COCO_RECALLS)} points) = {ap['coco101']:.4f}")
    found = int(pr.tp[-1]) if len(pr.tp) else 0
    sklearn = ("" if found == pr.positives else f", which counts recall over the {found} found only: "
               f"{ap['step'] * pr.positives / max(found, 1):.4f} = this x {pr.positives}/{found}")
    print(f"AP, not interpolated (scikit-learn's average_precision_score{sklearn}): each recall step times its "
          f"precision\n  = 1/{pr.positives} * ({' + '.join(f'{pr.precision[k]:.4f}' for k in hits_at) or '0'}) = "
          f"{ap['step']:.4f}")
    return ap


def yolo_output_command(grid=7, boxes=2, classes=20):
    """YOLO's output tensor: S x S x (B*5 + C) for YOLOv1 (grid=S boxes=B classes=C), and per-anchor classes"""
    if grid < 1:
        raise FovealError(f"grid: expected an integer >= 1, got {grid}")
    layouts = yolo_layouts(boxes, classes)
    v1, anchors = layouts["yolov1"][0], layouts["anchors"][0]
    formulas = {"yolov1": ("YOLOv1: S x S x (B*5 + C)", f"{grid} x {grid} x ({boxes}*5 + {classes})"),
                "anchors": ("anchor-based (YOLOv2/v3: classes per anchor): S x S x B*(5 + C)",
                            f"{grid} x {grid} x {boxes}*(5 + {classes})")}
    for name, (depth, groups) in layouts.items():
        general, filled = formulas[name]
        print(f"{general} = {filled} = {grid}x{grid}x{depth} = {grid * grid * depth} numbers")
        print(f"  each of the {grid * grid} cells, numbers 0..{depth - 1}:")
        for first, last, meaning in groups:
            print(f"    {first:>{len(str(depth))}}-{last:<{len(str(depth))}} {meaning}")
    print("x, y: the box centre within its cell (0..1); w, h: YOLOv1's relative to the image, an anchor's scaling "
          "the anchor's size; YOLOv1's confidence = P(object) * IoU(box, truth)")
    return {name: (grid, grid, depth) for name, (depth, _) in layouts.items()}


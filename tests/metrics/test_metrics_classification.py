import numpy as np
import pytest
import torch
from sklearn.metrics import classification_report, confusion_matrix as sk_confusion, top_k_accuracy_score

from foveal.metrics.classification import confusion_matrix, per_class_scores, summarize, topk_correct


@pytest.mark.parametrize("seed,num_classes", [(0, 2), (1, 5), (2, 10), (3, 7)])
def test_agrees_with_scikit_learn(seed, num_classes):
    g = torch.Generator().manual_seed(seed)
    n = 200
    logits = torch.randn(n, num_classes, generator=g)
    targets = torch.randint(0, num_classes, (n,), generator=g)
    logits[torch.arange(n), targets] += 1.0  # better than chance, but not perfect
    if num_classes > 3:
        logits[:, num_classes - 1] -= 10  # one class never predicted: precision undefined -> 0
    predictions = logits.argmax(1)
    labels = list(range(num_classes))
    cm = confusion_matrix(targets, predictions, num_classes)
    assert np.array_equal(cm.numpy(), sk_confusion(targets, predictions, labels=labels))
    report = classification_report(targets, predictions, labels=labels, output_dict=True, zero_division=0)
    scores = per_class_scores(cm)
    for c in labels:
        for key in ("precision", "recall", "f1-score"):
            ours = scores["f1" if key == "f1-score" else key][c].item()
            assert ours == pytest.approx(report[str(c)][key], abs=1e-12)
    summary = summarize(cm)
    assert summary["accuracy"] == pytest.approx(report["accuracy"], abs=1e-12)
    assert summary["f1"] == pytest.approx(report["macro avg"]["f1-score"], abs=1e-12)
    assert summary["precision"] == pytest.approx(report["macro avg"]["precision"], abs=1e-12)
    assert summary["recall"] == pytest.approx(report["macro avg"]["recall"], abs=1e-12)
    for k in (1, 2, 3):
        if k < num_classes and num_classes > 2:  # scikit-learn wants 1-D scores for two classes
            expected = top_k_accuracy_score(targets, logits.numpy(), k=k, labels=labels, normalize=False)
            assert topk_correct(logits, targets, (k,))[k] == expected


def test_topk_hand_computed_and_more_k_than_classes():
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    targets = torch.tensor([2, 0, 0])
    assert topk_correct(logits, targets, (1, 2, 5)) == {1: 1, 2: 2, 5: 3}

"""Classification metrics as pure functions on tensors, matching scikit-learn's definitions.

Written here rather than called from scikit-learn because they run every epoch on torch tensors
(possibly on the GPU); tests check them against scikit-learn on the same predictions.
"""

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """{k: how many rows have the target among the k highest logits}; logits (N, C), targets (N,)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (N, kmax)
    hits = top.eq(targets[:, None])  # (N, kmax)
    return {k: int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts: rows are true classes, columns predicted ones (as scikit-learn)."""
    index = targets.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_scores(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """precision, recall, f1 and support per class from a confusion matrix; 0 where undefined."""
    cm = confusion.double()
    tp = cm.diag()
    predicted, actual = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(tp))
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual.long()}


def summarize(confusion: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro-averaged precision/recall/F1 (classification_report's 'macro avg')."""
    scores = per_class_scores(confusion)
    total = confusion.sum().item()
    return {
        "accuracy": confusion.diag().sum().item() / total if total else 0.0,
        "precision": scores["precision"].mean().item(),
        "recall": scores["recall"].mean().item(),
        "f1": scores["f1"].mean().item(),
    }

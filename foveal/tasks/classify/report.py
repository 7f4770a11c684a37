"""The classification report: per-class scores, the confusion matrix and val predictions, wrong ones first."""

from pathlib import Path

from ...data.classify import LabelledImages
from ...engine.contract import EvalResult
from ...metrics.classification import per_class_scores
from ...report import Section, Table, image_grid, plot_bars, plot_confusion, plot_curves, write_report


def sample_grid(source: LabelledImages, details: dict, classes: list[str], count: int = 32) -> bytes:
    """Val images with 'true -> predicted (confidence)': wrong ones first, then right ones."""
    targets, predictions = details["targets"], details["predictions"]
    wrong = (targets != predictions).nonzero().flatten().tolist()
    right = (targets == predictions).nonzero().flatten().tolist()
    chosen = wrong[: count // 2] + right[: count - min(len(wrong), count // 2)]
    images = [source.load(i).permute(1, 2, 0).numpy() for i in chosen]
    captions = [f"{classes[targets[i]]}→{classes[predictions[i]]} {details['confidences'][i]:.2f}" for i in chosen]
    colors = ["green" if targets[i] == predictions[i] else "red" for i in chosen]
    return image_grid(images, captions, colors)


def per_class_table(result: EvalResult, classes: list[str]) -> Table:
    """precision, recall, F1 and support of each class (the report's table, and the end of `val`)."""
    scores = per_class_scores(result.details["confusion"])
    return Table(["class", "precision", "recall", "f1", "support"],
                 [[c, scores["precision"][i].item(), scores["recall"][i].item(), scores["f1"][i].item(),
                   int(scores["support"][i])] for i, c in enumerate(classes)])


def write_classify_report(run_dir: Path, title: str, history: list[dict], result: EvalResult,
                          classes: list[str], source: LabelledImages, curve_groups):
    details = result.details
    scores = per_class_scores(details["confusion"])
    table = per_class_table(result, classes)
    sections = [Section("summary", [result.metrics])]
    if history:
        sections.append(Section("training curves", [plot_curves(history, curve_groups)]))
    sections += [
        Section("confusion matrix", [plot_confusion(details["confusion"].numpy(), classes)]),
        Section("per-class scores", [table, plot_bars({c: scores["f1"][i].item() for i, c in enumerate(classes)},
                                                      "F1 per class")]),
        Section("validation predictions", ["true→predicted confidence; red: wrong",
                                           sample_grid(source, details, classes)]),
    ]
    write_report(run_dir / "report.html", title, sections)

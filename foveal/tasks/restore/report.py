"""The restore report: curves, the model against each classical baseline per val image, and zoomed crops."""

from ...report import Section, Table, image_grid, plot_curves, write_report


def write_restore_report(task, run_dir, history, result):
    cfg, details = task.cfg, result.details
    scored = (f"PSNR (dB) and SSIM on {details['scored_on']}, {task.crop_border} px left out at each edge; "
              f"degradation: {task.degradation.describe()}")
    rows = details["per_image"]
    columns = list(rows[0]) if rows else ["image"]
    sections = [Section("summary", [result.metrics, scored])]
    if history:
        sections.append(Section("training curves", [plot_curves(history, task.curve_groups)]))
    sections.append(Section("per image", [Table(columns, [[row[c] for c in columns] for row in rows])]))
    crops = [crop for sample in details["samples"] for crop in sample]
    captions = [caption for row in rows[:len(details["samples"])]
                for caption in (f"{row['image']}: input", f"output {row['psnr']:.2f} dB", "reference")]
    sections.append(Section("val crops", ["input (enlarged by repeating pixels) | output | reference",
                                          image_grid(crops, captions, columns=3)]))
    write_report(run_dir / "report.html", f"restore {cfg.model} on {cfg.data} ({task.eval_split})", sections)

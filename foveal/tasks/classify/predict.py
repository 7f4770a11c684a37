"""Classifying images, folders, globs, videos and cameras: the top classes of each (predictions.json), the top
one in predictions.csv, and with save=true each image with its top classes written above it."""

import csv
import io

import numpy as np
import torch

from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from ...engine.contract import Placement, Predictor
from ...engine.results import Probs
from ...files import write_text
from ...report.draw import labelled

LABELLED_WIDTH = 160  # predict: smaller images are enlarged (whole pixels) to write their top classes above


class ClassifyPredictor(Predictor):
    """Top-k classes of each image or frame; predictions.json and a predictions.csv of the top class."""

    def __init__(self, *args):
        super().__init__(*args)
        self.transform = eval_transform(self.imgsz, self.meta.get("mean", IMAGENET_MEAN), self.meta.get("std", IMAGENET_STD))
        self.topk = min(self.cfg.topk, len(self.classes))

    def prepare(self, pixels):
        image = self.transform(torch.from_numpy(pixels).permute(2, 0, 1))[None].to(self.device)
        if self.cfg.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        height, width = pixels.shape[:2]  # resized to imgsz x imgsz, not letterboxed
        return image, Placement(height, width, self.imgsz / width, self.imgsz / height)

    @torch.inference_mode()
    def infer(self, pixels):
        with self.phase("preprocess"):
            image, _ = self.prepare(pixels)
        with self.phase("inference"):
            logits = self.model(image)
        with self.phase("postprocess"):
            top = logits.float().softmax(1)[0].topk(self.topk)
            return [(self.classes[c], round(p, 6)) for p, c in zip(top.values.tolist(), top.indices.tolist())]

    def annotate(self, frame, top):
        self.results.append({"path": frame.name, "frame": frame.index,
                             "top": [{"class": c, "score": p} for c, p in top]})
        image = self.draw(frame, top) if self.cfg.save else None
        return image, ", ".join(f"{c} {p:.3f}" for c, p in top)

    def draw(self, frame, top):
        # the top classes in a strip above the image, not over it (a small image enlarged to read them)
        return labelled(frame.pixels, [f"{c} {p:.2f}" for c, p in top[:3]], min_width=LABELLED_WIDTH)

    def fields(self, frame, top):
        return {"probs": Probs(np.array([self.classes.index(c) for c, _ in top], np.int64),
                               np.array([p for _, p in top], np.float32))}

    def finish(self):
        if self.run_dir is None:  # the Python API without save=True: nothing written
            return f"{len(self.results)} classified"
        table = io.StringIO()
        rows = csv.writer(table, lineterminator="\n")
        rows.writerow(["path", "frame", "class", "score"])
        rows.writerows([r["path"], r["frame"], r["top"][0]["class"], r["top"][0]["score"]] for r in self.results)
        write_text(self.run_dir / "predictions.csv", table.getvalue())
        return f"{len(self.results)} classified"

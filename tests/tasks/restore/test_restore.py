"""The restore task end to end: training learns (above the degraded input, towards the classical baselines),
val scores the baselines as scikit-image computes them, tiles leave no seams, predict writes PNGs at the
right size, the ONNX export scores as PyTorch, and bad input is one line."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import foveal
import foveal.cli
from foveal.data.restore import Degradation, WholeImages, load_restore_data
from foveal.errors import FovealError
from foveal.metrics.restore import psnr
from foveal.registry import create_model
from foveal.ops.windows import restore_image
from foveal.tasks.restore.task import baseline_images

pytest.importorskip("skimage")

# tiny and quick: grey, small patches and models, val on 96 px centre crops of the embedded photos
QUICK = dict(data="photos", channels=1, patch=32, patches=512, batch=16, epochs=3, crop=96, lr=0.002, amp="off",
             threads=2, workers=0, verbose=False)


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    project = tmp_path_factory.mktemp("restore")
    return foveal.train("restore", model="dncnn", depth=5, width=16, project=project, name="dn", **QUICK), project


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_dncnn_learns_to_denoise(tmp_path, amp):
    run = foveal.train("restore", model="dncnn", depth=5, width=16, project=tmp_path, **{**QUICK, "amp": amp})
    metrics = run.metrics
    assert 20.1 < metrics["psnr_input"] < 21.5  # sigma 25 of 255: 20.17 dB, a little more once clipped to 0-1
    assert metrics["gain_input"] > 4.0  # far above the noisy input after 3 short epochs
    assert metrics["psnr_nlm"] > metrics["psnr_input"] + 4  # the classical baseline is a real one


def test_espcn_learns_above_bicubic(tmp_path):
    run = foveal.train("restore", model="espcn", width=16, scale=2, project=tmp_path, **QUICK)
    assert run.metrics["psnr_bicubic"] > 25  # a real baseline, not a broken one
    assert run.metrics["gain_bicubic"] > 0.1  # the skip starts at bicubic; training adds detail


def test_val_reproduces_training_and_scores_baselines_as_skimage(denoiser, tmp_path):
    from skimage.restoration import denoise_nl_means, estimate_sigma

    run, _ = denoiser
    result = foveal.val("restore", weights=run.best, crop=96, project=tmp_path, verbose=False)
    assert result.metrics["psnr"] == pytest.approx(run.metrics["psnr"], abs=1e-6)
    # the non-local means baseline is scikit-image's, on the same noisy image
    data = load_restore_data("photos")
    low, high, _ = WholeImages(data.splits["val"], 1, Degradation(sigma=25), seed=0, crop=96)[0]
    array = low.permute(1, 2, 0).numpy()
    sigma = float(np.mean(estimate_sigma(array, channel_axis=-1)))
    expected = denoise_nl_means(array, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6,
                                channel_axis=-1)
    ours = baseline_images(low, Degradation(sigma=25), paired=False)["nlm"]
    np.testing.assert_allclose(ours.permute(1, 2, 0).numpy(), expected.reshape(array.shape), atol=1e-6)
    per_image = result.details["per_image"][0]
    assert per_image["psnr_nlm"] == pytest.approx(psnr(ours.clamp(0, 1)[None], high[None]).item(), abs=1e-6)


def test_tiles_leave_no_seams():
    torch.manual_seed(0)
    model = create_model("dncnn", "restore", channels=1, depth=5, width=8).eval()
    torch.nn.init.normal_(model.layers[-1].weight, std=0.05)  # not the identity it starts as
    image = torch.rand(1, 1, 70, 90)
    whole = restore_image(model, image, 1)
    tiled = restore_image(model, image, 1, tile=40, margin=8)  # dncnn with 5 layers sees 5 px each way
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    sr = create_model("espcn", "restore", channels=1, scale=3, width=8).eval()
    torch.nn.init.normal_(sr.network[-1].weight, std=0.05)
    torch.testing.assert_close(restore_image(sr, image, 3, tile=32, margin=6), restore_image(sr, image, 3),
                               atol=1e-5, rtol=0)


def test_predict_writes_pngs_and_scores_degraded_sources(denoiser, tmp_path):
    run, _ = denoiser
    source = tmp_path / "images"
    source.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(source / "a.png")
    (result,) = foveal.predict("restore", weights=run.best, source=source, degrade=True, compare=True,
                               project=tmp_path, name="p", save=True)
    written = np.asarray(Image.open(tmp_path / "restore" / "p" / "a.png"))
    assert written.shape[1] == 3 * 70 and written.shape[0] > 50  # input | output | reference, named above
    grey = np.asarray(Image.open(source / "a.png").convert("RGB"))
    grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)  # the reference as the grey model sees it
    assert np.array_equal(written[-50:, 140:], np.repeat(grey[..., None], 3, 2))  # labels above, not over it
    assert (written[:-50] == 255).mean() > 0.8 and (written[:-50] < 128).any()  # a white strip with black text
    assert result.predictions[0]["width"] == 70 and "psnr" in result.predictions[0]
    assert result.restored.shape[:2] == (50, 70) and result.plot().shape[1] == 3 * 70


def test_super_resolution_predict_enlarges(tmp_path):
    run = foveal.train("restore", model="espcn", width=8, scale=2, project=tmp_path, **{**QUICK, "epochs": 1})
    source = tmp_path / "low.png"
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(source)
    foveal.predict("restore", weights=run.best, source=source, project=tmp_path, name="p", save=True)
    assert Image.open(tmp_path / "restore" / "p" / "low.png").size == (60, 40)


def test_onnx_export_scores_as_pytorch(denoiser, tmp_path):
    pytest.importorskip("onnxruntime")
    run, _ = denoiser
    expected = foveal.val("restore", weights=run.best, crop=96, project=tmp_path, verbose=False).metrics["psnr"]
    # a fixed 256 px graph restores each 96 px crop padded to its size (edge pixels repeated): the pixels
    # near the padded edges see the repeated ones instead of zero padding, a few hundredths of a dB
    for dynamic, tolerance in ((True, 1e-3), (False, 0.1)):
        foveal.api.run("restore", "export", weights=run.best, dynamic=dynamic, verbose=False)
        exported = foveal.val("restore", weights=run.best.with_suffix(".onnx"), crop=96, project=tmp_path,
                              verbose=False)
        assert exported.metrics["psnr"] == pytest.approx(expected, abs=tolerance), dynamic


def test_folders_and_pairs(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("high", "low"):
        (tmp_path / folder).mkdir()
    for k in range(4):
        high = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(high).save(tmp_path / "high" / f"{k}.png")
        Image.fromarray(high[::2, ::2]).save(tmp_path / "low" / f"{k}.png")
    data = load_restore_data(f"pairs:{tmp_path / 'low'},{tmp_path / 'high'}", val_fraction=0.25)
    assert data.paired and len(data.splits["train"]) == 3 and len(data.splits["val"]) == 1
    options = {**QUICK, "data": f"pairs:{tmp_path / 'low'},{tmp_path / 'high'}", "epochs": 1, "crop": 0, "patches": 32}
    run = foveal.train("restore", model="espcn", width=8, scale=2, project=tmp_path, **options)
    assert "psnr_bicubic" in run.metrics
    (tmp_path / "low" / "0.png").unlink()
    with pytest.raises(FovealError, match="without a partner"):
        load_restore_data(f"pairs:{tmp_path / 'low'},{tmp_path / 'high'}")
    data = load_restore_data(str(tmp_path / "high"), val_fraction=0.5)
    assert len(data.splits["train"]) == len(data.splits["val"]) == 2


@pytest.mark.parametrize("args, message", [
    (["model=dncnn", "scale=2"], "scale=1"),
    (["model=espcn", "depth=3"], "depth"),
    (["model=espcn", "scale=3", "patch=50"], "multiple of scale"),
    (["data=no/such/folder"], "no such folder"),
    (["patch=4000"], "smaller than"),
    (["channels=2"], "expected one of 1, 3"),
    (["data={small}"], "patch: {small}/0.png is 20x30, smaller than the 48x48 patch; lower patch="),
    (["data=pairs:{low},{high}", "model=espcn", "scale=3", "patch=24"],
     "data: pairs: {low}/0.png is 24x24, but {high}/0.png (48x48) at scale 3 needs 16x16"),
])
def test_mistakes_are_one_line(tmp_path, args, message, capsys):
    folders = {"small": tmp_path / "small", "low": tmp_path / "low", "high": tmp_path / "high"}
    for folder in folders.values():
        folder.mkdir()
    for k in range(3):  # images smaller than the patch, and pairs at scale 2 where scale 3 is asked
        Image.fromarray(np.full((30, 20, 3), 40 * k, np.uint8)).save(folders["small"] / f"{k}.png")
        Image.fromarray(np.full((48, 48, 3), 40 * k, np.uint8)).save(folders["high"] / f"{k}.png")
        Image.fromarray(np.full((24, 24, 3), 40 * k, np.uint8)).save(folders["low"] / f"{k}.png")
    args = [a.format(**folders) for a in args]
    # in this process (tests/test_cli.py shows that `python -m foveal` exits with main's code): 8 starts saved
    code = foveal.cli.main(["restore", "train", *args, "epochs=1", "patches=16", "crop=64", f"project={tmp_path / 'runs'}"])
    stderr = capsys.readouterr().err
    assert code == 2 and message.format(**folders) in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made


@pytest.mark.parametrize("mode", ["predict", "val"])
def test_a_tile_smaller_than_its_margins_is_refused_before_any_output(denoiser, tmp_path, capsys, mode):
    run, _ = denoiser
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "dark.png")
    code = foveal.cli.main(["restore", mode, f"weights={run.best}", "tile=1", f"source={tmp_path / 'dark.png'}",
                            "verbose=false", f"project={tmp_path / 'runs'}"])
    assert code == 2 and capsys.readouterr().err == "foveal: error: tile: 1 must be more than twice tile_margin (16)\n"
    assert not (tmp_path / "runs").exists()  # no predictions.json, no val folder left behind


def test_a_crop_larger_than_the_val_images_is_said(denoiser, tmp_path):
    run, _ = denoiser
    with pytest.warns(UserWarning, match=r"crop: 5000 is larger than 3 of the 3 val images \(e.g. camera, 512x512\)"):
        whole = foveal.val("restore", weights=run.best, crop=5000, project=tmp_path, verbose=False)
    assert whole.metrics["psnr"] != pytest.approx(run.metrics["psnr"], abs=1e-6)  # not the 96 px crops trained on


def test_info_of_a_grey_super_resolution_model():
    result = foveal.info("restore", model="espcn", scale=3, imgsz=12, channels=1, verbose=False)
    model = create_model("espcn", "restore", channels=1, scale=3)
    assert tuple(result.input_shape) == (1, 1, 12, 12)
    assert result.total_params == sum(p.numel() for p in model.parameters())
    # MACs of the three convs at 12 x 12 and of the bicubic skip's conv (9 phases of 5 x 5); the shuffle has none
    assert result.total_macs == 144 * (1 * 64 * 25 + 64 * 32 * 9 + 32 * 9 * 9 + 9 * 25)


def test_benchmark_rows(denoiser, tmp_path):
    pytest.importorskip("onnxruntime")
    run, _ = denoiser
    pytorch, onnx = foveal.api.run("restore", "benchmark", weights=run.best, runs=3, batch=2, crop=96, threads=2,
                                   project=tmp_path, verbose=False)
    assert (pytorch["format"], onnx["format"]) == ("pytorch", "onnx") and not onnx.get("error"), onnx
    assert onnx["psnr"] == pytest.approx(pytorch["psnr"], abs=0.1)  # the fixed graph pads the crops (see above)
    for row in (pytorch, onnx):
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["throughput"] > 0 and row["inference_ms"] > 0

"""`foveal basics`: convolution, pooling and output sizes checked against hand-computed matrices, plain numpy
loops and scipy.signal; the image ops against known pixels; the CLI's printouts and one-line errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import signal

import foveal.cli
from foveal.errors import FovealError
from foveal.inspect.basics import (basics, conv, grayscale, named_kernel, output_size, parse_filters, parse_matrix,
                                   parse_volume, pool, threshold)

LECTURE_INPUT = "1,1,1,0,0;0,1,1,1,0;0,0,1,1,1;0,0,1,1,0;0,1,1,0,0"
LECTURE_KERNEL = "1,0,1;0,1,0;1,0,1"


def text_of(array: np.ndarray) -> str:
    """The inline syntax of a (H, W), (C, H, W) or (F, C, H, W) integer array: `;` rows, `|` channels, `/` filters."""
    if array.ndim == 2:
        return ";".join(",".join(str(int(v)) for v in row) for row in array)
    return ("|" if array.ndim == 3 else "/").join(text_of(part) for part in array)


def correlate_loop(volume, filters, biases, stride=1, padding=0, dilation=1):
    """(F, Ho, Wo): the sum over channels and taps of a CNN layer, written as loops."""
    volume = np.pad(volume, ((0, 0), (padding, padding), (padding, padding)))
    taps = filters.shape[-1]
    reach = dilation * (taps - 1) + 1
    out_h = (volume.shape[1] - reach) // stride + 1
    out_w = (volume.shape[2] - reach) // stride + 1
    out = np.zeros((len(filters), out_h, out_w))
    for f, weights in enumerate(filters):
        for i in range(out_h):
            for j in range(out_w):
                window = volume[:, i * stride:i * stride + reach:dilation, j * stride:j * stride + reach:dilation]
                out[f, i, j] = (window * weights).sum() + biases[f]
    return out


def cli(capsys, *args):
    """(exit code, stdout, stderr) of foveal.cli.main(['basics', *args])."""
    code = foveal.cli.main(["basics", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_lecture_example_gives_its_matrix():
    result = conv(parse_matrix(LECTURE_INPUT), parse_matrix(LECTURE_KERNEL))
    assert result.dtype == torch.float64
    assert result.tolist() == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]


def test_a_volume_with_two_filters_stride_2_padding_1_matches_a_loop(capsys):
    rng = np.random.default_rng(7)
    volume = rng.integers(0, 3, (3, 5, 5))  # CS231n's demo: a 5x5x3 input, two 3x3x3 filters, biases 1 and 0
    filters = rng.integers(-1, 2, (2, 3, 3, 3))
    expected = correlate_loop(volume, filters, [1, 0], stride=2, padding=1)
    assert expected.shape == (2, 3, 3)
    result = conv(volume, filters, stride=2, padding=1, bias=[1, 0])
    assert np.array_equal(result.numpy(), expected)
    assert torch.equal(parse_volume(text_of(volume)), torch.as_tensor(volume, dtype=torch.float64))
    assert torch.equal(parse_filters(text_of(filters)), torch.as_tensor(filters, dtype=torch.float64))

    code, out, err = cli(capsys, "conv", f"input={text_of(volume)}", f"kernel={text_of(filters)}", "stride=2",
                         "padding=1", "bias=1,0")
    assert code == 0, err
    assert "input 5x5x3, kernel 2 filters of 3x3x3" in out and "(5 + 2*1 - 1*(3-1) - 1) / 2 + 1 = 3" in out
    printed = [[int(v) for v in line.split()] for line in out.splitlines() if line.startswith("  ")]
    assert np.array_equal(np.array(printed), expected.reshape(6, 3))


@pytest.mark.parametrize("kernel_shape", [(3, 3), (3, 5), (2, 4)])
def test_correlation_and_convolution_agree_with_scipy(kernel_shape):
    rng = np.random.default_rng(sum(kernel_shape))
    image, kernel = rng.normal(size=(7, 9)), rng.normal(size=kernel_shape)
    paddings = ["valid", "full"] + (["same"] if all(k % 2 for k in kernel_shape) else [])
    for padding in paddings:
        correlated = conv(image, kernel, padding=padding).numpy()
        convolved = conv(image, kernel, padding=padding, flip=True).numpy()
        np.testing.assert_allclose(correlated, signal.correlate2d(image, kernel, mode=padding), atol=1e-12)
        np.testing.assert_allclose(convolved, signal.convolve2d(image, kernel, mode=padding), atol=1e-12)


def test_dilation_and_stride_match_a_loop():
    rng = np.random.default_rng(3)
    volume, filters = rng.normal(size=(2, 11, 10)), rng.normal(size=(3, 2, 3, 3))
    result = conv(volume, filters, stride=2, padding=1, dilation=2, bias=[0.5, 0, -1])
    np.testing.assert_allclose(result.numpy(), correlate_loop(volume, filters, [0.5, 0, -1], 2, 1, 2), atol=1e-12)


def test_a_2d_kernel_filters_each_channel_on_its_own():
    volume = np.random.default_rng(4).normal(size=(3, 6, 6))
    result = conv(volume, named_kernel("sobel_x"), padding=1)
    assert result.shape == (3, 6, 6)
    for channel, filtered in zip(volume, result):
        np.testing.assert_allclose(filtered.numpy(), signal.correlate2d(channel, named_kernel("sobel_x").numpy(),
                                                                        mode="same"), atol=1e-12)


def test_pooling_matches_numpy_reshapes():
    values = np.random.default_rng(5).normal(size=(2, 6, 8))
    blocks = values.reshape(2, 3, 2, 4, 2)  # (C, H/2, 2, W/2, 2)
    np.testing.assert_array_equal(pool(values, 2).numpy(), blocks.max(axis=(2, 4)))
    np.testing.assert_allclose(pool(values, 2, mode="avg").numpy(), blocks.mean(axis=(2, 4)), atol=1e-12)
    assert pool(values[0], 3, stride=1).shape == (4, 6)


def test_output_size_follows_the_formula_and_refuses_sizes_that_do_not_fit():
    assert output_size(227, 11, stride=4) == 55  # AlexNet's first layer
    assert output_size(32, 3, padding=1) == 32
    assert output_size(32, 2, stride=2) == 16  # pooling
    assert output_size(7, 3, dilation=2) == 3
    with pytest.raises(FovealError, match=r"^stride: the sizes do not fit: .* = 4 is not divisible by 3 "
                                          r"\(remainder 1\); padding=1 fits$"):
        output_size(7, 3, stride=3)
    with pytest.raises(FovealError, match="remainder 1.*no padding fits stride 4: crop the input by 1"):
        output_size(224, 11, stride=4)
    assert output_size(224, 11, stride=4, exact=False) == 54  # floored, as frameworks do
    with pytest.raises(FovealError, match="^kernel: 7 is larger than the padded input 3 "):
        output_size(3, 7, padding=1)
    with pytest.raises(FovealError, match="^stride: expected an integer >= 1, got 0"):
        output_size(5, 3, stride=0)


def test_named_kernels():
    assert named_kernel("identity").tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert named_kernel("sobel_x").tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    assert torch.equal(named_kernel("sobel_y"), named_kernel("sobel_x").T)
    assert named_kernel("prewitt_x").tolist() == [[-1, 0, 1]] * 3
    assert torch.equal(named_kernel("prewitt_y"), named_kernel("prewitt_x").T)
    assert named_kernel("laplacian").tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    assert named_kernel("sharpen").tolist() == [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
    assert named_kernel("emboss").tolist() == [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]
    assert torch.equal(named_kernel("box"), torch.full((3, 3), 1 / 9, dtype=torch.float64))
    assert torch.equal(named_kernel("box_blur", 5), named_kernel("box", 5))
    assert (named_kernel("gaussian") * 16).tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    row = np.array([1, 4, 6, 4, 1])
    assert np.array_equal(named_kernel("gaussian", 5).numpy() * 256, np.outer(row, row))
    with pytest.raises(FovealError, match=r"^kernel: unknown kernel 'sobelx' \(did you mean 'sobel_x'\?\)"):
        named_kernel("sobelx")
    with pytest.raises(FovealError, match="^ksize: only box and gaussian take a size"):
        named_kernel("sobel_x", 5)


def test_parse_matrix_names_what_is_wrong():
    assert parse_matrix(" 1, 2 ;3 4 ").tolist() == [[1, 2], [3, 4]]
    with pytest.raises(FovealError, match="^input: row 2 has 4 values, row 1 has 5$"):
        parse_matrix("1,1,1,0,0;0,1,1,1")
    with pytest.raises(FovealError, match="^kernel: row 1: 'x' is not a number$"):
        parse_matrix("1,x", key="kernel")
    with pytest.raises(FovealError, match="^input: channel 2 is 1x2, channel 1 is 2x2$"):
        parse_volume("1,2;3,4|1,2")
    with pytest.raises(FovealError, match="^kernel: filter 2 is 1x1x2, filter 1 is 1x1$"):
        parse_filters("1/1|2")
    with pytest.raises(FovealError, match="^kernel: each filter has 2 channel"):
        conv(np.ones((3, 4, 4)), np.ones((2, 3, 3)))


@pytest.fixture
def colours(tmp_path):
    """A 2x3 image of known colours: red, green, blue / white, black, grey 100."""
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 255], [0, 0, 0], [100, 100, 100]]],
                      dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "colours.png")
    return tmp_path / "colours.png", pixels


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_image_ops_write_the_expected_pngs(colours, tmp_path, capsys):
    path, pixels = colours
    project = f"project={tmp_path / 'runs'}"
    assert cli(capsys, "negative", f"source={path}", project)[0] == 0
    assert np.array_equal(read_png(tmp_path / "runs/basics/negative/colours.png"), 255 - pixels)

    code, out, _ = cli(capsys, "grayscale", f"source={path}", project)
    assert code == 0 and "ITU-R BT.601" in out
    expected = [[76, 150, 29], [255, 0, 100]]  # 0.299*255, 0.587*255, 0.114*255 rounded
    assert read_png(tmp_path / "runs/basics/grayscale/colours.png").tolist() == expected
    assert grayscale(pixels).tolist() == expected

    assert cli(capsys, "threshold", f"source={path}", "value=99", project)[0] == 0
    assert read_png(tmp_path / "runs/basics/threshold/colours.png").tolist() == [[0, 255, 0], [255, 0, 255]]
    assert cli(capsys, "threshold", f"source={path}", project)[0] == 0  # a second run: threshold2
    assert read_png(tmp_path / "runs/basics/threshold2/colours.png").tolist() == [[0, 255, 0], [255, 0, 0]]

    code, out, _ = cli(capsys, "histogram", f"source={path}", project)
    assert code == 0 and "6 pixels" in out and "  0- 31: 2" in out and "224-255: 1" in out
    assert read_png(tmp_path / "runs/basics/histogram/colours.png").shape[1] > 100


def test_otsu_splits_two_populations():
    dark = np.full((10, 10, 3), 40, dtype=np.uint8)
    dark[:, 6:] = 200
    binary, level = threshold(dark, "otsu")
    assert 40 <= level < 200 and binary[:, 6:].min() == 255 and binary[:, :6].max() == 0


def test_conv_on_an_image(colours, tmp_path, capsys):
    path, pixels = colours
    project = f"project={tmp_path / 'runs'}"
    code, out, _ = cli(capsys, "conv", f"source={path}", "kernel=identity", "padding=1", project)
    assert code == 0 and "applied to each of the 3 channels on its own" in out and "rounded and clipped" in out
    assert np.array_equal(read_png(tmp_path / "runs/basics/conv/colours.png"), pixels)

    step = np.zeros((6, 8, 3), dtype=np.uint8)
    step[:, 4:] = 200  # a vertical edge: sobel_x answers 4 * 200 beside it, 0 elsewhere
    Image.fromarray(step).save(tmp_path / "step.png")
    code, out, _ = cli(capsys, "conv", f"source={tmp_path / 'step.png'}", "kernel=sobel_x", project, "name=edge")
    assert code == 0 and "values before mapping: 0 .. 800" in out and "absolute values scaled" in out
    assert "output height = (N + 2P - D(F-1) - 1) / S + 1 = (6 + 2*0 - 1*(3-1) - 1) / 1 + 1 = 4" in out
    edges = read_png(tmp_path / "runs/basics/edge/step.png")
    assert edges.shape == (4, 6, 3) and edges[:, 2:4].min() == 255 and edges[:, [0, 1, 4, 5]].max() == 0

    code, out, _ = cli(capsys, "pool", f"source={tmp_path / 'step.png'}", "size=2", project)
    assert code == 0 and read_png(tmp_path / "runs/basics/pool/step.png").shape == (3, 4, 3)


def test_the_cli_prints_matrices_and_sizes(capsys):
    code, out, err = cli(capsys, "conv", f"input={LECTURE_INPUT}", f"kernel={LECTURE_KERNEL}")
    assert code == 0, err
    assert "cross-correlation" in out and out.endswith("output 3x3:\n4 3 4\n2 4 3\n2 3 4\n")

    code, out, _ = cli(capsys, "pool", "input=1,1,2,4;5,6,7,8;3,2,1,0;1,2,3,4", "size=2", "mode=avg")
    assert code == 0 and out.endswith("output 2x2:\n3.2500 5.2500\n2.0000 2.0000\n")

    code, out, _ = cli(capsys, "size", "input=227", "kernel=11", "stride=4", "padding=0")
    assert code == 0 and "(227 + 2*0 - 1*(11-1) - 1) / 4 + 1 = 55" in out

    code, out, _ = cli(capsys, "kernels")
    assert code == 0 and "gaussian = 1/16 x:" in out and "box (box_blur) = 1/9 x:" in out
    assert basics("size", {"input": "32", "kernel": "3", "padding": "1"}) == 32


@pytest.mark.parametrize("args, message", [
    (["cnv"], "basics: unknown op 'cnv' (did you mean 'conv'?)"),
    (["conv", f"input={LECTURE_INPUT}", "kernel=sobelx"], "kernel: unknown kernel 'sobelx' (did you mean 'sobel_x'?)"),
    (["conv", "input=1,1,1,0,0;0,1,1,1", "kernel=box"], "input: row 2 has 4 values, row 1 has 5"),
    (["conv", "input=1,2;3,4", "kernel=1,two"], "kernel: row 1: 'two' is not a number"),
    (["conv", "input=1,2;3,4", "kernel=box"], "kernel: 3 is larger than the padded input 2 + 2*0 = 2"),
    (["conv", "input=1,2;3,4", "kernel=box", "strde=2"], "unknown key 'strde' for basics conv (did you mean 'stride"),
    (["conv", "input=1,2;3,4", "kernel=1", "project=x"], "project: only for source= images"),
    (["conv", "source=missing.png", "kernel=box"], "source: no such file or folder: missing.png"),
    (["conv", "kernel=box"], "input: give either input=MATRIX"),
    (["conv", "input=1,2;3,4|5,6;7,8", "kernel=1,1;1,1/1,1;1,1"], "kernel: each filter has 1 channel(s), the input"),
    (["conv", "input=1,2;3,4", "kernel=1", "bias=1,2"], "bias: 2 values for 1 output maps"),
    (["conv", "input=1,2;3,4", "kernel=1", "stride=two"], "stride: expected an integer, got 'two'"),
    (["size", "input=224", "kernel=11", "stride=4"], "stride: the sizes do not fit"),
    (["size", "input=5", "kernel=3", "stride=0"], "stride: expected an integer >= 1, got 0"),
    (["pool", "input=1,2;3,4", "mode=median"], "mode: expected max or avg, got 'median'"),
    (["threshold", "source=missing.png", "value=otsu"], "source: no such file or folder"),
])
def test_user_mistakes_end_in_one_line(capsys, args, message):
    code, out, err = cli(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_an_unreadable_image_is_named(tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code, _, err = cli(capsys, "negative", f"source={tmp_path / 'broken.png'}", f"project={tmp_path}")
    assert code == 2 and "broken.png: not a readable image" in err and err.count("\n") == 1
    assert not (tmp_path / "basics").exists()  # no run folder for a failed read

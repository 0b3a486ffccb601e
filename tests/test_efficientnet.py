"""The pretrained EfficientNet-Lite0 backbone: known-answer classification of real photographs (a
broken weight mapping cannot pass), TensorFlow SAME padding, the keypoint network in every path
(build, train step, safetensors, ONNX with a dynamic batch)."""

from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from interp3d.config import preset
from interp3d.models import EfficientNetKeypointNet, EfficientNetLite0, Interpreter
from interp3d.models.efficientnet import IMAGENET_MEAN, IMAGENET_STD, SameConv2d, load_lite0_weights
from interp3d.models.serialization import OnnxInterpreter, build_interpreter, export_interpreter, load_interpreter

skdata = pytest.importorskip("skimage.data")

# ImageNet classes: 281-285 are the domestic cats (281 tabby, 282 tiger cat, 285 Egyptian cat), 967 espresso
CATS, ESPRESSO = range(281, 286), 967


@pytest.fixture(scope="module")
def classifier():
    return load_lite0_weights(EfficientNetLite0()).eval()


def _imagenet_input(array: np.ndarray, size: int = 224) -> torch.Tensor:
    h, w = array.shape[:2]
    s = min(h, w)
    crop = np.ascontiguousarray(array[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])
    x = torch.from_numpy(np.array(Image.fromarray(crop).resize((size, size), Image.BICUBIC))).permute(2, 0, 1)[None].float() / 255
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_pretrained_encoder_classifies_real_photographs(classifier):
    with torch.no_grad():
        cat = classifier(_imagenet_input(skdata.chelsea())).softmax(-1)[0]
        coffee = classifier(_imagenet_input(skdata.coffee())).softmax(-1)[0]
    assert int(cat.argmax()) in CATS and float(cat[list(CATS)].sum()) > 0.6
    assert int(coffee.argmax()) == ESPRESSO and float(coffee[ESPRESSO]) > 0.8


def test_weights_that_do_not_fit_the_definition_are_refused(tmp_path):
    model = EfficientNetLite0()
    state = dict(load_lite0_weights(EfficientNetLite0()).state_dict())
    key = "_blocks.3._depthwise_conv.weight"
    state[key] = state[key][:, :, :2]  # a wrong kernel size
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"bad.pth.*_blocks.3._depthwise_conv.weight"):
        load_lite0_weights(model, bad)
    torch.save(dict(list(state.items())[:-3]), bad)
    with pytest.raises(ValueError, match="tensors"):
        load_lite0_weights(model, bad)


@pytest.mark.parametrize("side,kernel,stride", [(16, 3, 2), (16, 5, 2), (15, 3, 2), (15, 5, 1), (8, 1, 1)])
def test_same_padding_matches_tensorflow(side, kernel, stride):
    conv = SameConv2d(2, 3, kernel, stride=stride, bias=False)
    x = torch.randn(1, 2, side, side)
    out = conv(x)
    assert out.shape[-1] == -(-side // stride)  # TF SAME: ceil(side / stride)
    # TF pads total = max((out - 1) * stride + kernel - side, 0), the extra pixel at the end
    total = max((out.shape[-1] - 1) * stride + kernel - side, 0)
    ref = F.conv2d(F.pad(x, (total // 2, total - total // 2) * 2), conv.weight, stride=stride)
    torch.testing.assert_close(out, ref)


def test_keypoint_net_starts_from_the_pretrained_encoder(classifier):
    net = EfficientNetKeypointNet(10, pretrained=True)
    ref = classifier.state_dict()
    mine = net.encoder.state_dict()
    assert set(mine) == {k for k in ref if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
    assert all(torch.equal(mine[k], ref[k]) for k in mine)
    out = net(torch.rand(2, 3, 128, 128))
    assert len(out) == 1 and out[0].shape == (2, 10, 32, 32)
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.rand(1, 3, 100, 100))


def _model_config(**overrides):
    return asdict(preset("cpu-small").model) | {"image_size": 64, "backbone": "efficientnet_lite0", "decoder_channels": 16, "lifter": "keypoints", "keypoint_lifter_width": 32, "lifter_hypotheses": 2} | overrides


def test_interpreter_with_the_encoder_trains_exports_and_runs_in_onnx(tmp_path):
    torch.manual_seed(0)
    model = build_interpreter("sofa", _model_config(), 16)
    assert type(model.keypoint_net).__name__ == "EfficientNetKeypointNet"
    images = torch.rand(3, 3, 64, 64)
    out = model(images)
    out.keypoints.square().mean().backward()
    assert model.keypoint_net.encoder._conv_stem.weight.grad.abs().sum() > 0  # the encoder fine-tunes end to end
    model.eval()
    path = export_interpreter(model, tmp_path / "sofa.safetensors", half=True)
    again = load_interpreter(path)
    with torch.no_grad():
        a, b = model(images), again(images)
    torch.testing.assert_close(b.heatmaps, a.heatmaps, atol=0.05, rtol=0.05)
    onnx_out = OnnxInterpreter(again, threads=1)(images)  # batch 3: the export is not specialised to its example
    torch.testing.assert_close(onnx_out.heatmaps, b.heatmaps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx_out.structure, b.structure, atol=1e-4, rtol=1e-4)


def test_backbone_and_sizes_are_checked():
    with pytest.raises(ValueError, match="1/4 of the image"):
        build_interpreter("chair", _model_config(), 32)
    with pytest.raises(ValueError, match="unknown backbone 'resnet'"):
        build_interpreter("chair", _model_config(backbone="resnet"), 16)


def test_files_from_before_the_backbone_choice_still_load():
    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (16,))
    old = {("hourglass." + k[len("keypoint_net."):] if k.startswith("keypoint_net.") else k): v for k, v in model.state_dict().items()}
    fresh = Interpreter.build("chair", 32, 16, 16, 2, 1, (16,))
    fresh.load_state_dict(old)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


def test_mixing_the_encoder_with_its_imagenet_weights(classifier):
    from interp3d.models.efficientnet import mix_encoder_with_pretrained

    torch.manual_seed(0)
    net = EfficientNetKeypointNet(10, pretrained=False, view_bins=4)  # an encoder far from ImageNet's
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ref = classifier.state_dict()
    mixed = mix_encoder_with_pretrained(net, 0.25, ref)
    after = net.state_dict()
    floats = [k for k, v in net.encoder.state_dict().items() if v.is_floating_point()]
    assert mixed == len(floats) > 100
    for k in ("_conv_stem.weight", "_blocks.3._bn2.running_var"):  # a weight and a BatchNorm statistic, exactly a quarter of the way
        torch.testing.assert_close(after["encoder." + k], 0.75 * before["encoder." + k] + 0.25 * ref[k])
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("encoder."))  # decoder and head stay
    # all the way back: the encoder is ImageNet's again, and with the classifier's head it names the cat
    mix_encoder_with_pretrained(net, 1.0, ref)
    whole = EfficientNetLite0()
    whole.load_state_dict(ref)  # the classifier's head ...
    whole.load_state_dict(net.encoder.state_dict(), strict=False)  # ... on the mixed encoder
    with torch.no_grad():
        assert int(whole.eval()(_imagenet_input(skdata.chelsea())).argmax()) in CATS
    with pytest.raises(ValueError, match="share in"):
        mix_encoder_with_pretrained(net, 1.5, ref)
    with pytest.raises(TypeError, match="HourglassNet"):
        mix_encoder_with_pretrained(Interpreter.build("chair", 32, 16, 16, 2, 1, (16,)).keypoint_net, 0.1, ref)

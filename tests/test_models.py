"""The torch nets of the registry, and their agreement with the shipped ONNX files."""
from __future__ import annotations

import numpy as np
import pytest

from openmtcnn.models import INPUT_SIZES, STAGES, create_model, list_models, model_spec

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


def pnet_map_size(n: int, stem: str = "pool") -> int:
    """Output map side of a P-Net on an n-pixel side: conv3, maxpool2 (ceil), conv3, conv3; with the
    "stride" stem conv4 at stride 2 (floor), conv3, conv3: one window fewer at an odd side."""
    return (-(-(n - 2) // 2) if stem == "pool" else (n - 4) // 2 + 1) - 4


def random_images(shape, seed=0) -> np.ndarray:
    """uint8-valued float32 NCHW images, as the cascade feeds the nets."""
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)


def has_landmark_head(model) -> bool:
    return getattr(model.heads, "landmarks", None) is not None


# ---- the registry ------------------------------------------------------------------------------

def test_registry_lists_the_published_variants():
    names = list_models()
    assert {"pnet", "rnet", "onet"} <= set(names)
    assert names == sorted(names)
    for stage in STAGES:
        staged = list_models(stage)
        assert staged and all(model_spec(n).stage == stage for n in staged)
    assert sorted(sum((list_models(s) for s in STAGES), [])) == names


def test_unknown_model_is_a_value_error():
    with pytest.raises(ValueError, match="unknown model"):
        model_spec("no-such-net")
    with pytest.raises(ValueError):
        create_model("no-such-net")


def test_published_heads():
    assert not has_landmark_head(create_model("pnet"))
    assert not has_landmark_head(create_model("rnet"))
    assert has_landmark_head(create_model("onet"))


def test_onet_dropout_acts_in_training_only():
    """det3's dropout: same parameters as without it, same outputs in eval mode, random ones in training."""
    plain, dropped = create_model("onet", dropout=0.0), create_model("onet", dropout=0.25)
    assert list(plain.state_dict()) == list(dropped.state_dict())
    dropped.load_state_dict(plain.state_dict())
    x = torch.from_numpy(random_images((4, 3, 48, 48)))
    with torch.no_grad():
        for a, b in zip(plain.eval()(x), dropped.eval()(x)):
            assert torch.equal(a, b)
        dropped.train()
        torch.manual_seed(0)
        first = dropped(x)[0]
        assert not torch.equal(first, dropped(x)[0])


# ---- every registered variant (the timm habit) -------------------------------------------------

@pytest.mark.parametrize("name", list_models())
def test_model_forward(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    spec = model_spec(name)
    assert model.spec is spec
    size = spec.input_size
    assert size == INPUT_SIZES[spec.stage]
    n = 3
    expected_channels = [2, 4] + ([10] if has_landmark_head(model) else [])

    shapes = [(size, size)]
    if spec.stage == "pnet":  # fully convolutional: also a larger, odd-sized image
        shapes.append((37, 53))
    for h, w in shapes:
        x = torch.from_numpy(random_images((n, 3, h, w), seed=h * w))
        with torch.no_grad():
            out = model(x)
        assert isinstance(out, tuple) and len(out) == len(expected_channels)
        for t, c in zip(out, expected_channels):
            if spec.stage == "pnet":
                stem = spec.kwargs.get("stem", "pool")
                assert tuple(t.shape) == (n, c, pnet_map_size(h, stem), pnet_map_size(w, stem))
            else:
                assert tuple(t.shape) == (n, c)
            assert torch.isfinite(t).all()
    if spec.stage == "pnet":
        assert pnet_map_size(12) == pnet_map_size(12, "stride") == 1
        assert (pnet_map_size(37), pnet_map_size(53), pnet_map_size(38, "stride")) == (14, 22, 14)


@pytest.mark.parametrize("name", [n for n in list_models() if model_spec(n).stage != "pnet"])
def test_model_rejects_wrong_input_size(name):
    """R-Net and O-Net have a fully connected layer: another crop size cannot pass."""
    spec = model_spec(name)
    model = create_model(name).eval()
    with pytest.raises(RuntimeError), torch.no_grad():
        model(torch.zeros(1, 3, spec.input_size + 8, spec.input_size + 8))


# ---- published weights: torch and ONNX give the same numbers -----------------------------------

@pytest.fixture(scope="module")
def torch_nets():
    from openmtcnn.runtime import make_nets

    return make_nets("published", backend="torch", device="cpu")


@pytest.fixture(scope="module", params=["onnx", "opencv"])
def onnx_nets(request):
    """The ONNX files as ONNX Runtime and as OpenCV DNN run them."""
    from openmtcnn.runtime import make_nets

    return make_nets("published", backend=request.param)


STAGE_INPUTS = {
    "pnet": [(1, 3, 12, 12), (2, 3, 37, 53)],
    "rnet": [(1, 3, 24, 24), (7, 3, 24, 24)],
    "onet": [(1, 3, 48, 48), (5, 3, 48, 48)],
}
STAGE_OUTPUTS = {"pnet": 2, "rnet": 2, "onet": 3}


@pytest.mark.parametrize("stage", STAGES)
def test_torch_and_onnx_agree(stage, torch_nets, onnx_nets):
    for i, shape in enumerate(STAGE_INPUTS[stage]):
        x = random_images(shape, seed=i + 10)
        a, b = torch_nets(stage, x), onnx_nets(stage, x)
        assert len(a) == len(b) == STAGE_OUTPUTS[stage]
        for ta, ob in zip(a, b):
            assert ta.shape == ob.shape
            assert np.isfinite(ob).all()
            np.testing.assert_allclose(ta, ob, atol=1e-4, rtol=0)
        prob = b[0]
        n = shape[0]
        if stage == "pnet":
            assert prob.shape == (n, pnet_map_size(shape[2]), pnet_map_size(shape[3]))
            assert b[1].shape == (n, 4) + prob.shape[1:]
        else:
            assert prob.shape == (n,)
            assert b[1].shape == (n, 4)
        if stage == "onet":
            assert b[2].shape == (n, 10)
        assert ((prob >= 0) & (prob <= 1)).all()


def test_onnx_batch_rows_are_independent(onnx_nets):
    """A crop's outputs do not depend on what else is in the batch."""
    x = random_images((6, 3, 48, 48), seed=3)
    whole = onnx_nets("onet", x)
    for i in (0, 5):
        single = onnx_nets("onet", x[i:i + 1])
        for w, s in zip(whole, single):
            np.testing.assert_allclose(w[i:i + 1], s, atol=1e-5)


# ---- re-export -----------------------------------------------------------------------------------

def _session(data: bytes):
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("stage", STAGES)
def test_reexport_published_net(stage, torch_nets):
    from openmtcnn.weights.onnx import to_onnx_bytes
    from openmtcnn.runtime.torch import load_net

    data = to_onnx_bytes(load_net("published", stage).net)
    sess = _session(data)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    names = [o.name for o in sess.get_outputs()]
    assert names == ["prob", "box", "landmarks"][:STAGE_OUTPUTS[stage]]
    size = INPUT_SIZES[stage]
    # batch 3 although the export traced batch 1; P-Net also at another image size
    shapes = [(3, 3, size, size)] + ([(3, 3, 30, 41)] if stage == "pnet" else [])
    for shape in shapes:
        x = random_images(shape, seed=shape[2])
        got = sess.run(None, {"image": x})
        want = torch_nets(stage, x)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.shape[0] == 3
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list_models())
def test_reexport_any_variant(name):
    from openmtcnn.weights.onnx import to_onnx_bytes
    from openmtcnn.models.nets import Inference

    torch.manual_seed(1)
    model = create_model(name).eval()
    sess = _session(to_onnx_bytes(model))
    size = model_spec(name).input_size
    x = random_images((4, 3, size, size), seed=5)
    with torch.no_grad():
        want = [t.numpy() for t in Inference(model)(torch.from_numpy(x))]
    got = sess.run(None, {"image": x})
    assert len(got) == len(want) == 2 + has_landmark_head(model)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list_models())
def test_runtime_graph_is_the_same_function(name):
    """for_runtime: no PRelu or Softmax left; PReLU splitting is bit-exact, padding and the
    one-logit face head agree to float rounding, for every variant, with slopes of both signs."""
    import onnx

    from openmtcnn.weights.onnx import pad_channels, split_prelus, to_onnx_bytes

    torch.manual_seed(2)
    model = create_model(name).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(-1.5, 1.5)
    size = model_spec(name).input_size
    x = random_images((5, 3, size + 7 * (size == 12), size + 9 * (size == 12)), seed=6)
    plain = _session(to_onnx_bytes(model, optimize=False)).run(None, {"image": x})
    split = _session(to_onnx_bytes(split_prelus(model), optimize=False)).run(None, {"image": x})
    for a, b in zip(plain, split):
        np.testing.assert_array_equal(a, b)
    if name == "rnet":  # 28 -> 32 channels after the first convolution, and the next one reads 32
        first, second = [m for m in pad_channels(model).body if isinstance(m, torch.nn.Conv2d)][:2]
        assert first.out_channels == second.in_channels == 32
    data = to_onnx_bytes(model)
    assert not {"PRelu", "Softmax"} & {n.op_type for n in onnx.load_from_string(data).graph.node}
    for a, b in zip(plain, _session(data).run(None, {"image": x})):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=0)


@pytest.mark.parametrize("name", list_models())
def test_pool_before_prelu_is_the_same_function(name):
    """P-Nets pool before their first PReLU, bit for bit, with slopes of both signs (the V-shaped
    case needs the window's minimum too); R-Nets and O-Nets are left as they are."""
    import onnx

    from openmtcnn.weights.onnx import PoolThenPReLU, pad_channels, pool_before_prelu, to_onnx_bytes

    torch.manual_seed(3)
    model = create_model(name).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.PReLU):
            m.weight.data.uniform_(-1.5, 1.5)
    pooled = pool_before_prelu(model)
    rewritten = [m for m in pooled.body if isinstance(m, PoolThenPReLU)]
    if model_spec(name).input_size != 12:
        assert not rewritten
        return
    size = 12
    x = random_images((3, 3, size + 31, size + 45), seed=7)
    # Against the same widths (channels padded to 16), so both graphs sum in the same order.
    plain = _session(to_onnx_bytes(pad_channels(model), optimize=False)).run(None, {"image": x})
    got = _session(to_onnx_bytes(pad_channels(pooled), optimize=False)).run(None, {"image": x})
    for a, b in zip(plain, got):
        np.testing.assert_array_equal(a, b)
    separable = any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.body)
    if any(isinstance(m, torch.nn.PReLU) for m in model.body) and not separable:
        assert rewritten  # conv, PReLU, pool followed by a plain convolution
        ops = [n.op_type for n in onnx.load_from_string(to_onnx_bytes(model)).graph.node]
        assert ops.index("MaxPool") < ops.index("Relu")  # the activation runs on the pooled map


def test_shipped_onnx_files_are_runtime_graphs():
    import onnx

    from openmtcnn.weights import available_weights, manifest, onnx_path

    for name in available_weights():
        if manifest(name).get("int8"):
            continue
        for stage in STAGES:
            ops = {n.op_type for n in onnx.load(str(onnx_path(name, stage))).graph.node}
            assert not {"PRelu", "Softmax"} & ops, (name, stage)


@pytest.mark.parametrize("name", list_models("pnet"))
def test_pnet_window_is_12_at_stride_2(name):
    """The cascade maps output (r, c) to input pixels 2r..2r+11, 2c..2c+11 for every P-Net, stems alike:
    changing a pixel moves exactly the outputs whose window holds it."""
    torch.manual_seed(4)
    model = create_model(name).eval()
    x = torch.from_numpy(random_images((1, 3, 40, 40), seed=8))
    y = x.clone()
    y[0, :, 17, 22] = 255 - y[0, :, 17, 22]
    with torch.no_grad():
        changed = (model(x)[1] != model(y)[1]).any(1)[0].numpy()
    rows, cols = np.arange(changed.shape[0]), np.arange(changed.shape[1])
    inside = ((2 * rows <= 17) & (17 <= 2 * rows + 11))[:, None] & ((2 * cols <= 22) & (22 <= 2 * cols + 11))[None, :]
    assert not (changed & ~inside).any()
    assert changed[inside].mean() > 0.5  # random weights: nearly every window that holds the pixel moves


def test_unknown_pnet_stem_is_a_value_error():
    with pytest.raises(ValueError, match="unknown P-Net stem"):
        create_model("pnet", stem="dilated")

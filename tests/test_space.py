"""Search space: names, encoding, registry, models, samplers, costs, functional embedding."""

import numpy as np
import pytest
import torch

from tans._errors import TansError
from tans.space import (
    EMBEDDING_SIZE,
    NUM_FEATURES,
    Arch,
    count_params,
    create_model,
    encoding_size,
    functional_embedding,
    is_model,
    list_models,
    measure,
    param_range,
    parse_arch,
    probe_images,
    register_model,
    resolve_arch,
    sample_stratified,
    sample_uniform,
)
from tans.space.arch import DEPTHS, KERNELS, MAX_DEPTH, NUM_STAGES

torch.set_num_threads(1)


def test_name_round_trip_over_many_samples():
    archs = sample_uniform(500, seed=1) + sample_stratified(20, seed=2)
    for a in archs:
        assert parse_arch(a.name) == a
        assert parse_arch(a.name).name == a.name
    assert len({a.name for a in archs}) > 400  # names tell architectures apart


def test_name_format_example():
    a = Arch(0.75, ((3, 5), (3, 5, 7), (7, 5, 3, 7), (3, 5), (3, 3, 3)), ((3, 4), (4, 6, 6), (3, 3, 6, 4), (6, 6), (3, 4, 6)))
    assert a.name == "mbv3_w0.75_d2-3-4-2-3_k35-357-7537-35-333_e34-466-3364-66-346"
    assert a.depths == (2, 3, 4, 2, 3)


@pytest.mark.parametrize(
    "name, match",
    [
        ("resnet_w1.0", "must start with 'mbv3_'"),
        ("mbv3_w1.0_d2-2-2-2-2_k33-33-33-33-33", "does not have the form"),
        ("mbv3_w1_d2-2-2-2-2_k33-33-33-33-33_e33-33-33-33-33", "unknown width 'w1'.*Did you mean 'w1.0'"),
        ("mbv3_w1.0_d2-2-2-2_k33-33-33-33_e33-33-33-33", "needs 5 groups"),
        ("mbv3_w1.0_d2-2-2-2-5_k33-33-33-33-33_e33-33-33-33-33", r"stage 5 of 'd' is '5'"),
        ("mbv3_w1.0_d2-2-2-2-2_k33-33-33-33-39_e33-33-33-33-33", r"stage 5 of 'k' is '39'"),
        ("mbv3_w1.0_d2-2-2-2-2_k33-33-33-33-33_e33-33-33-33-35", r"stage 5 of 'e' is '35'"),
        ("mbv3_w1.0_d2-2-2-2-2_k33-33-33-33-333_e33-33-33-33-33", "stage 5 has depth 2 but 3 kernel"),
    ],
)
def test_parse_errors(name, match):
    with pytest.raises(TansError, match=match):
        parse_arch(name)


def test_arch_validation():
    with pytest.raises(TansError, match="Width multiplier must be one of"):
        Arch(2.0, ((3, 3),) * 5, ((3, 3),) * 5)
    with pytest.raises(TansError, match="kernel sizes must be in"):
        Arch(1.0, ((3, 9),) * 5, ((3, 3),) * 5)


def test_encoding_masks_inactive_blocks():
    a = Arch(0.5, ((3, 5), (7, 7, 7), (3, 3, 3, 3), (5, 5), (7, 3)), ((3, 4), (6, 6, 6), (3, 4, 6, 3), (4, 4), (6, 3)))
    enc = a.encode()
    assert enc.shape == (encoding_size(),) and enc.dtype == np.float32
    head = 3 + NUM_STAGES * len(DEPTHS)
    slots = enc[head:].reshape(NUM_STAGES, MAX_DEPTH, -1)  # (stage, slot, one-hots)
    active = slots.sum(-1) > 0
    np.testing.assert_array_equal(active, a.active_mask())
    assert not slots[0, 2:].any() and not slots[1, 3].any()
    np.testing.assert_array_equal(slots[active].sum(-1), 2.0)  # one kernel + one expansion
    assert slots[1, 0, KERNELS.index(7)] == 1.0
    assert enc.sum() == 1 + NUM_STAGES + 2 * sum(a.depths)
    # different architectures, different encodings
    b = parse_arch(a.name.replace("k35-", "k33-"))
    assert not np.array_equal(b.encode(), enc)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_with_timm_interface(name):
    model = create_model(name, num_classes=7).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, NUM_FEATURES, 4, 4)
    assert model.forward_head(feats, pre_logits=True).shape == (2, NUM_FEATURES)
    assert model(x).shape == (2, 7)
    assert model.num_classes == 7 and model.num_features == NUM_FEATURES
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    assert sum(p.numel() for p in model.parameters()) == count_params(resolve_arch(name), num_classes=3)


def test_canonical_names_build_and_param_count_matches():
    for a in sample_uniform(6, seed=3):
        model = create_model(a.name, num_classes=4)
        assert sum(p.numel() for p in model.parameters()) == count_params(a, num_classes=4)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_custom_cpu_depthwise_gradient_matches_reference():
    torch.manual_seed(0)
    model = create_model("mbv3_small", num_classes=3)
    x = torch.randn(4, 3, 32, 32)

    def grads(m):
        m.zero_grad()
        m(x).square().sum().backward()
        return [p.grad.clone() for p in m.parameters()]

    fast = grads(model)
    import tans.space.mobilenet as mb

    saved, mb._SMALL_MAP = mb._SMALL_MAP, 0  # route every depth-wise layer through oneDNN
    try:
        reference = grads(model)
    finally:
        mb._SMALL_MAP = saved
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_registry_errors_and_timm():
    with pytest.raises(TansError, match="Unknown model 'mbv3_medain'.*Did you mean 'mbv3_median'"):
        create_model("mbv3_medain")
    with pytest.raises(TansError, match="Unknown timm model 'resnet19'"):
        create_model("timm/resnet19")
    with pytest.raises(TansError, match="already registered"):

        @register_model
        def mbv3_min(**kwargs):  # noqa: F811 - the point is the duplicate
            return None

    assert is_model("mbv3_min") and is_model("timm/resnet18") and not is_model("mbv3_nope")
    assert resolve_arch("timm/resnet18") is None
    model = create_model("timm/resnet18", num_classes=5).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    assert "timm/resnet18" in list_models("timm/resnet1*", include_timm=True)
    assert list_models("mbv3_m*") == ["mbv3_max", "mbv3_median", "mbv3_min"]


def test_stratified_sampler_spans_ten_times_params():
    archs = sample_stratified(15, seed=0)
    params = [count_params(a) for a in archs]
    assert len({a.name for a in archs}) == 15
    assert params == sorted(params)
    assert max(params) / min(params) >= 10
    assert [a.name for a in sample_stratified(15, seed=0)] == [a.name for a in archs]
    lo, hi = param_range()
    assert lo <= min(params) and max(params) <= hi
    limited = sample_stratified(5, seed=0, max_params=100_000)
    assert all(count_params(a) <= 100_000 * 1.05 for a in limited)
    with pytest.raises(TansError, match="leaves nothing of the space"):
        sample_stratified(3, min_params=10_000_000)


def test_uniform_sampler_is_seeded():
    assert [a.name for a in sample_uniform(5, seed=4)] == [a.name for a in sample_uniform(5, seed=4)]
    assert [a.name for a in sample_uniform(5, seed=4)] != [a.name for a in sample_uniform(5, seed=5)]
    with pytest.raises(TansError, match="positive integer"):
        sample_uniform(0)


def test_measure_returns_sane_values():
    small, large = create_model("mbv3_min", num_classes=10), create_model("mbv3_max", num_classes=10)
    cs = measure(small, repeats=3)
    cl = measure(large, repeats=3)
    assert cs.params == count_params(resolve_arch("mbv3_min"))
    assert 0 < cs.flops < cl.flops and cs.params < cl.params
    assert 0.5e6 < cs.flops < 50e6  # a few MFLOPs at 32x32
    assert cs.latency_ms > 0 and cs.latency_threads == 1 and "cores" in cs.machine
    assert torch.get_num_threads() == 1  # restored


def test_functional_embedding_is_deterministic_and_fixed_size():
    probe = probe_images()
    assert probe.shape == (16, 32, 32, 3) and probe.dtype == np.uint8
    assert probe.min() == 0 and probe.max() == 255
    torch.manual_seed(0)
    a = create_model("mbv3_min", num_classes=3)
    torch.manual_seed(1)
    b = create_model("mbv3_median", num_classes=10)
    with torch.no_grad():  # non-zero residual branches so the networks differ visibly
        for m in (a, b):
            for bn in m.modules():
                if isinstance(bn, torch.nn.BatchNorm2d):
                    bn.weight.fill_(1.0)
    ea, eb = functional_embedding(a), functional_embedding(b)
    assert ea.shape == eb.shape == (EMBEDDING_SIZE,) and ea.dtype == np.float32
    np.testing.assert_array_equal(ea, functional_embedding(a))
    assert np.isfinite(ea).all() and not np.allclose(ea, eb)
    assert a.training  # mode restored
    timm_model = create_model("timm/resnet18", num_classes=3)
    assert functional_embedding(timm_model).shape == (EMBEDDING_SIZE,)

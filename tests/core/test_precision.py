"""The precision/layout policy: detection, probe, pinning, and cast-once inference matching fp32."""
import pytest
import torch

from genfw import Context, GenfwError
from genfw.core import precision
from genfw.core.bench import bf16_supported
from genfw.registry import get_registry


@pytest.fixture
def unpinned(monkeypatch):
    monkeypatch.delenv("GENFW_PRECISION", raising=False)


def test_cpu_flags_parses_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 amx_tile amx_bf16\nbogomips\t: 1\n")
    assert precision.cpu_flags(str(info)) == {"fpu", "sse2", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_amx_means_bf16_channels_last_without_probing(unpinned):
    p = precision.choose_policy("cpu", flags=frozenset({"amx_bf16", "amx_tile"}), speedup=0.5)
    assert (p.precision, p.channels_last) == ("bf16", True) and "amx_bf16" in p.reason


@pytest.mark.parametrize("speedup, expected", [(2.1, "bf16"), (1.1, "fp32"), (None, "fp32")])
def test_without_amx_the_probe_decides(unpinned, speedup, expected):
    p = precision.choose_policy("cpu", flags=frozenset({"avx512_bf16"}), speedup=speedup)
    assert p.precision == expected and p.channels_last == (expected == "bf16")
    if speedup is not None:
        assert f"{speedup:.2f}x" in p.reason  # the reason states the measured ratio


def test_pin_and_bad_values(monkeypatch):
    monkeypatch.setenv("GENFW_PRECISION", "bf16")
    assert precision.choose_policy("cpu", flags=frozenset()).precision == "bf16"
    monkeypatch.setenv("GENFW_PRECISION", "fp8")
    with pytest.raises(GenfwError, match="GENFW_PRECISION"):
        precision.choose_policy("cpu")
    with pytest.raises(GenfwError, match="fp16 needs a CUDA"):
        precision.resolve("fp16", "cpu")
    with pytest.raises(GenfwError, match="not one of"):
        precision.resolve("half", "cpu")
    assert precision.resolve("bf16", "cpu", channels_last=False) == precision.Policy("bf16", False, "requested")


def test_probe_measures_this_machine(unpinned):
    if not bf16_supported("cpu"):
        assert precision.bf16_probe_speedup("cpu") is None
        return
    ratio = precision.bf16_probe_speedup("cpu")
    assert ratio > 0 and precision.bf16_probe_speedup("cpu") == ratio  # measured once per process
    p = precision.choose_policy("cpu")
    assert p.precision == ("bf16" if ("amx_bf16" in precision.cpu_flags() or ratio >= precision.BF16_MIN_SPEEDUP)
                           else "fp32")


def _introvae():
    reg = get_registry()
    net = {"channels": [8, 16, 32], "z_dim": 16}
    algo = reg.build({"type": "introvae.algorithm", "encoder": {"type": "introvae.encoder", **net},
                      "decoder": {"type": "introvae.decoder", **net}}, kind="algorithm")
    algo.setup(Context(registry=reg, device=torch.device("cpu"), image_size=32, channels=3))
    return algo


@pytest.mark.skipif(not bf16_supported("cpu"), reason="no bf16 on this CPU")
def test_cast_once_sampling_matches_fp32_within_tolerance():
    torch.manual_seed(0)
    ref, fast = _introvae(), _introvae()
    for name in ref.nets:
        fast.nets[name].load_state_dict(ref.nets[name].state_dict())
    want = ref.sample(6, torch.Generator().manual_seed(3))
    policy = precision.prepare_inference(fast, "bf16")
    assert (policy.precision, policy.channels_last) == ("bf16", True)
    conv = next(m for m in fast.decoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.dtype == torch.bfloat16 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    ptr = conv.weight.data_ptr()
    got = fast.sample(6, torch.Generator().manual_seed(3))
    again = fast.sample(6, torch.Generator().manual_seed(3))
    assert conv.weight.data_ptr() == ptr  # cast once: calls do not replace the weights
    assert got.dtype == torch.float32 and torch.equal(got, again)
    # stated tolerance: bf16 keeps 8 bits of mantissa; images in [0, 1] differ by < 0.03 on average
    assert (got - want).abs().mean() < 0.03
    rec = fast.reconstruct(want)
    assert rec.dtype == torch.float32 and rec.shape == want.shape


@pytest.mark.skipif(not bf16_supported("cpu"), reason="no bf16 on this CPU")
def test_cast_once_inpainting_keeps_known_pixels_and_matches_fp32():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
    from test_csa_model import _algo, _batch

    torch.manual_seed(0)
    ref = _algo()
    fast = _algo()
    for name in ref.nets:
        fast.nets[name].load_state_dict(ref.nets[name].state_dict())
    batch = _batch()
    want = ref.inpaint(batch["image"], batch["mask"])["output"]
    precision.prepare_inference(fast, "bf16")
    got = fast.inpaint(batch["image"], batch["mask"])["output"]
    known = batch["mask"].expand_as(got) < 0.5
    assert got.dtype == torch.float32 and torch.equal(got[known], batch["image"][known])
    assert (got - want).abs().max() < 0.1 and (got - want)[~known].abs().mean() < 0.03


def test_fp32_inference_changes_nothing():
    algo = _introvae()
    before = {k: v.clone() for k, v in algo.decoder.state_dict().items()}
    precision.prepare_inference(algo, "fp32")
    assert all(torch.equal(before[k], v) for k, v in algo.decoder.state_dict().items())
    assert algo.inference_policy.precision == "fp32"

"""The CSA search's bf16 product with the exact fp32 re-check: the same arg-max as the fp32 search
on every kind of map (random, signed, ties, near-duplicates, flat regions, odd sizes, both layouts),
the bf16 rounding it relies on, the fallback, and the recycled output maps."""
import pytest
import torch

from genfw.plugins.csa import recurrence
from genfw.plugins.csa.layer import coherent_attention

needs_kernel = pytest.mark.skipif(recurrence.kernel() is None, reason="no C compiler for the CSA kernel")


def _fill(x, mask):
    lib = recurrence.kernel()
    order, counts = recurrence.hole_order(lib, mask)
    hw = x.shape[-1] * x.shape[-2]
    lens = [c if 0 < c < hw else 0 for c in counts]
    with torch.no_grad():
        out, a, best, pid = recurrence.Fill.apply(x, order, counts, lens, True, 1e-8, 0)
    return out.clone(), a.clone(), best.clone(), pid.clone()


def _maps(kind, g):
    n, c, h, w = (2, 40, 13, 11) if kind == "odd-sizes" else (2, 64, 16, 16)
    x = torch.randn(n, c, h, w, generator=g)
    if kind in ("random", "odd-sizes", "channels-last"):
        x = x.relu_()
    elif kind == "duplicates":  # every key appears twice: ties, and the first of equals must win
        x = x.relu_()
        x[..., 8:, :] = x[..., :8, :]
    elif kind == "near-duplicates":  # keys a hair apart: many keys in the bf16 error window
        x = x[:, :, :1, :1].relu() + 1e-4 * torch.rand(n, c, h, w, generator=g)
    elif kind == "flat":  # one feature everywhere: every key ties, the re-check gives up
        x = x[:, :, :1, :1].abs().expand(n, c, h, w).contiguous()
    if kind == "channels-last":
        x = x.contiguous(memory_format=torch.channels_last)
    mask = (torch.rand(n, 1, h, w, generator=g) < 0.3).float()
    return x, mask


KINDS = ["random", "signed", "odd-sizes", "channels-last", "duplicates", "near-duplicates", "flat"]


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_bf16_search_picks_what_the_fp32_search_picks(kind, threads, monkeypatch):
    x, mask = _maps(kind, torch.Generator().manual_seed(KINDS.index(kind)))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        monkeypatch.setenv("GENFW_CSA_SEARCH", "fp32")
        ref = _fill(x, mask)
        monkeypatch.setenv("GENFW_CSA_SEARCH", "bf16")
        recurrence.search_counts.clear()
        got = _fill(x, mask)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got[2], ref[2])  # the same best key for every hole
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    ran = recurrence.search_counts
    if kind == "flat":
        assert ran["fp32"] == 2 and ran["bf16+check"] == 0  # all keys tie: re-checking would cost more
    elif kind != "near-duplicates":
        assert ran["bf16+check"] == 2


@needs_kernel
def test_bf16_search_finds_the_true_arg_max(monkeypatch):
    """Against a float64 search written out here: <f, k> / |k| over the known positions."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 128, 16, 16, generator=g).relu_()
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 3:13] = 1
    monkeypatch.setenv("GENFW_CSA_SEARCH", "bf16")
    _, _, best, pid = _fill(x, mask)
    feats = x[0].flatten(1).double()
    hole = mask.flatten() > 0.5
    known = (~hole).nonzero().flatten()
    scores = feats[:, hole].t() @ feats[:, known] / feats[:, known].norm(dim=0)
    assert torch.equal(pid, hole.nonzero().flatten())
    assert torch.equal(best, known[scores.argmax(1)])


@needs_kernel
def test_bf16_rows_round_like_torch_and_norms_are_fp32():
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(7, 45, generator=g) * torch.logspace(-20, 20, 45)  # 45: a vector part and a tail
    rows[0, 0] = float("inf")
    rows[1, :3] = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, -0.0])  # ties to even, both ways
    dst = torch.empty(7, 45, dtype=torch.bfloat16)
    nrm = torch.empty(7)
    recurrence.kernel().csa_rows_bf16(dst.data_ptr(), rows.data_ptr(), 7, 45, nrm.data_ptr())
    assert torch.equal(dst.view(torch.int16), rows.bfloat16().view(torch.int16))
    assert nrm[0] == float("inf")
    rows = torch.randn(7, 45, generator=g) * torch.logspace(-3, 3, 45)
    recurrence.kernel().csa_rows_bf16(dst.data_ptr(), rows.data_ptr(), 7, 45, nrm.data_ptr())
    assert torch.allclose(nrm, rows.double().norm(dim=1).float(), rtol=1e-6)


def test_search_setting_is_checked(monkeypatch):
    monkeypatch.setenv("GENFW_CSA_SEARCH", "fast")
    with pytest.raises(ValueError, match="GENFW_CSA_SEARCH must be one of"):
        recurrence.bf16_search()
    monkeypatch.setenv("GENFW_CSA_SEARCH", "fp32")
    assert recurrence.bf16_search() is False


@pytest.mark.parametrize("amx,speedup,expected", [(True, 0.0, True), (False, 2.1, True), (False, 1.2, False),
                                                   (False, 0.0, False)])
def test_auto_search_follows_amx_then_the_product_probe(amx, speedup, expected, monkeypatch):
    monkeypatch.delenv("GENFW_CSA_SEARCH", raising=False)
    monkeypatch.setattr(recurrence, "_amx", lambda: amx)
    monkeypatch.setattr(recurrence, "product_speedup", lambda: speedup)
    assert recurrence.bf16_search() is expected


def test_product_probe_is_measured_once_per_thread_count(monkeypatch):
    monkeypatch.setattr(recurrence, "_product_cache", {})
    calls = []
    real = recurrence._time_products
    monkeypatch.setattr(recurrence, "_time_products", lambda: calls.append(1) or real())
    first = recurrence.product_speedup()
    assert first >= 0 and first == first and first != float("inf")
    assert recurrence.product_speedup() == first and len(calls) == 1
    before = torch.get_num_threads()
    torch.set_num_threads(1 if before != 1 else 2)
    try:
        recurrence.product_speedup()
    finally:
        torch.set_num_threads(before)
    assert len(calls) == 2


@needs_kernel
def test_output_maps_are_recycled_only_once_let_go():
    x, mask = _maps("random", torch.Generator().manual_seed(1))
    recurrence.release_scratch()
    with torch.no_grad():
        first = coherent_attention(x, mask)
        kept = first.clone()
        held = coherent_attention(x * 2, mask)
        assert first.data_ptr() != held.data_ptr() and torch.equal(first, kept)
        view, ptr = first[1], first.data_ptr()
        del first
        third = coherent_attention(x * 3, mask)  # a view still points into the first map
        assert third.data_ptr() != ptr and torch.equal(view, kept[1])
        del view, held
        fourth = coherent_attention(x, mask)
        assert fourth.data_ptr() == ptr or fourth.data_ptr() != third.data_ptr()
        assert torch.equal(fourth, kept) and torch.equal(third, coherent_attention(x * 3, mask))


@needs_kernel
def test_layer_called_from_another_thread_gives_the_same_result():
    """Scratch and recycled maps are per thread, and OpenMP teams are sized from the calling thread."""
    import threading

    x, mask = _maps("random", torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = coherent_attention(x, mask).clone()
    got = {}

    def work():
        with torch.no_grad():
            got["out"] = coherent_attention(x, mask).clone()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert torch.equal(got["out"], ref)


@needs_kernel
def test_run_without_autograd_equals_the_autograd_function():
    x, mask = _maps("random", torch.Generator().manual_seed(3))
    lib = recurrence.kernel()
    order, counts = recurrence.hole_order(lib, mask)
    hw = x.shape[-1] * x.shape[-2]
    lens = [c if 0 < c < hw else 0 for c in counts]
    with torch.no_grad():
        ref = [t.clone() for t in recurrence.Fill.apply(x, order, counts, lens, True, 1e-8, 0)]
    got = [t.clone() for t in recurrence.Fill.run(x, order, counts, lens, True, 1e-8, 0)]
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    # the layer takes the direct path for an input that needs no gradient, the function otherwise
    y = coherent_attention(x, mask)
    xg = x.clone().requires_grad_()
    yg = coherent_attention(xg, mask)
    assert torch.equal(y, ref[0]) and torch.equal(yg.detach(), ref[0]) and yg.grad_fn is not None
    # scratch-backed orders and per-hole outputs do not leak into a later call's results
    other, _ = _maps("signed", torch.Generator().manual_seed(4))
    first, second = coherent_attention(x, mask), coherent_attention(other, mask)
    assert torch.equal(first, ref[0]) and not torch.equal(second, first)
    # the attention matrix is built from the scratch-backed outputs: the torch path's, to rounding
    att = coherent_attention(x, mask, return_attention=True)[1]
    torch_att = coherent_attention(x, mask, return_attention=True, use_kernel=False)[1]
    assert torch.allclose(att, torch_att, atol=1e-5)


def test_a_bad_search_setting_is_one_line_and_exit_2(monkeypatch):
    from click.testing import CliRunner

    from genfw.cli import cli

    monkeypatch.setenv("GENFW_CSA_SEARCH", "fast")
    res = CliRunner().invoke(cli, ["bench", "csa.layer", "--quick"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        "error: GENFW_CSA_SEARCH must be one of ['auto', 'bf16', 'fp32'], got 'fast'; unset it to let the layer choose")
    assert "Traceback" not in res.output

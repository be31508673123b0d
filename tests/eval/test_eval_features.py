"""Inception features through torch-fidelity: scores equal calculate_metrics; real features cached."""
import pytest
import torch

from genfw.core.eval import features as F


def _images(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g) * 0.5 + shift
    return [t for t in F.to_uint8_rgb(x.clamp(0, 1))]


def test_scores_equal_calculate_metrics_and_reference_is_cached(weight_files, monkeypatch):
    import torch_fidelity

    torch.set_num_threads(1)
    fe = F.InceptionFeatures(weight_files["inception"], batch_size=4, progress=False)
    fake, real = F.Uint8Images(_images(4, 1, 0.3)), F.Uint8Images(_images(4, 2))
    ff = fe.extract(fake)
    sha = F.images_sha256([torch.stack(real.images)])
    rf, info = fe.reference(real, sha)
    assert info["reused"] is False
    s, used = F.scores(ff, rf, ["kid", "isc", "prc"], seed=3)  # fid: test_eval_report (one 2048^2 eig is slow)
    raw = torch_fidelity.calculate_metrics(input1=fake, input2=real, kid=True, isc=True, prc=True,
                                           cuda=False, feature_extractor="inception-v3-compat",
                                           feature_extractor_weights_path=weight_files["inception"],
                                           kid_subset_size=4, isc_splits=4, prc_neighborhood=3, rng_seed=3,
                                           verbose=False, batch_size=4, save_cpu_ram=True)
    assert s["kid"]["mean"] == pytest.approx(raw["kernel_inception_distance_mean"], rel=1e-4, abs=1e-8)
    assert s["isc"]["mean"] == pytest.approx(raw["inception_score_mean"], rel=1e-5)
    assert s["prc"]["precision"] == pytest.approx(raw["precision"]) and s["prc"]["recall"] == pytest.approx(raw["recall"])
    assert used["kid_subset_size"] == 4 and used["isc_splits"] == 4
    # a second run on the same images reads the cache and never runs Inception on them
    monkeypatch.setattr(fe, "extract", lambda *a, **k: pytest.fail("reference features recomputed"))
    again, info2 = fe.reference(real, sha)
    assert info2["reused"] is True and torch.equal(again["2048"], rf["2048"])
    # a different set (other hash) is not served from the cache
    with pytest.raises(pytest.fail.Exception):
        fe.reference(fake, F.images_sha256([torch.stack(fake.images)]))


def test_png_round_trip_is_lossless(tmp_path):
    imgs = _images(3, 5)
    files = []
    for i, img in enumerate(imgs):
        F.save_uint8_png(img, tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    back = F.PngImages(files)
    assert all(torch.equal(back[i], imgs[i]) for i in range(3))

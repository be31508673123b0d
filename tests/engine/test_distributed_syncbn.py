"""SyncBatchNorm on 2 gloo processes: IntroVAE's encoder on two half batches computes what one
process computes on the whole batch (outputs, averaged gradients, running statistics); plain
BatchNorm does not (so the comparison can fail)."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

BATCH = 8


def _encoder():
    from genfw.plugins.introvae.networks import Encoder, NetConfig

    torch.manual_seed(0)
    return Encoder(NetConfig(image_size=16, channels=[8, 8], in_channels=3, z_dim=4))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(BATCH, 3, 16, 16, generator=g), torch.randn(BATCH, 4, generator=g)


def _loss(net, x, target):
    mu, logvar = net(x)
    return ((mu - target) ** 2 + logvar.exp()).sum(1).mean()  # a mean over this process' samples


def _results(net, mu):
    out = {f"grad/{k}": p.grad for k, p in net.named_parameters()}
    out.update({f"buf/{k}": b.float() for k, b in net.named_buffers()})
    out["mu"] = mu
    return {k: v.detach().contiguous() for k, v in out.items()}


def _worker(rank: int, world: int, port: int, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from genfw.core.distributed import average_gradients, convert_sync_batchnorm

    dist.init_process_group("gloo", rank=rank, world_size=world)
    for sync in (True, False):
        net = _encoder()
        if sync:
            net, n = convert_sync_batchnorm(net)
            assert n == 5  # the stem's BatchNorm and two in each of the two residual blocks
        x, target = _data()
        part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        _loss(net, x[part], target[part]).backward()
        average_gradients(list(net.parameters()))
        with torch.no_grad():
            mu = net.eval()(x[part])[0]  # eval: the running statistics, no collective
        save_file(_results(net, mu), f"{result}-{sync}.{rank}")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path):
    result = str(tmp_path / "r")
    mp.start_processes(_worker, args=(2, _free_port(), result), nprocs=2, join=True, start_method="spawn")
    return {sync: (load_file(f"{result}-{sync}.0"), load_file(f"{result}-{sync}.1")) for sync in (True, False)}


def _close(a, b):
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # two spawned processes
def test_sync_batchnorm_on_two_halves_equals_one_process_on_the_batch(tmp_path):
    torch.set_num_threads(1)
    net = _encoder()
    x, target = _data()
    _loss(net, x, target).backward()
    with torch.no_grad():
        mu = net.eval()(x)[0]
    full = _results(net, mu)
    runs = _run(tmp_path)
    r0, r1 = runs[True]
    for k in full:
        if k == "mu":
            assert _close(torch.cat([r0[k], r1[k]]), full[k])
        else:
            assert _close(r0[k], full[k]), k
            assert torch.equal(r0[k], r1[k]), k  # both ranks hold the same statistics and gradients
    p0, _ = runs[False]  # plain BatchNorm: per-rank statistics, not the whole batch's
    assert not _close(p0["buf/body.1.running_mean"], full["buf/body.1.running_mean"])
    assert not all(_close(p0[k], full[k]) for k in full if k.startswith("grad/"))

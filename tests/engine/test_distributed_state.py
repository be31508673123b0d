"""In-process parts of multi-process training: the shared data stream, per-rank checkpoint state,
SyncBatchNorm conversion and the config option (the multi-process behaviour is in
test_distributed_torchrun.py and test_distributed_syncbn.py)."""
import json

import pytest
import torch
from torch import nn

from genfw import GenfwError
from genfw.core import checkpoint as ck
from genfw.core.distributed import GlobalOrder, StreamSampler, SyncBatchNorm, convert_sync_batchnorm


def _stream(n, seed, world, batch, start, steps):
    """Global batches (as sets of every rank's items) of `steps` steps from stream position `start`."""
    orders = [GlobalOrder(n, batch, seed, r, world) for r in range(world)]
    its = [iter(StreamSampler(o, start)) for o in orders]
    return [[i for it in its for i in next(it)] for _ in range(steps)]


def test_one_stream_for_every_world_size():
    # one process, batch 6: the stream is epoch permutations back to back
    solo = [i for b in _stream(12, 5, 1, 6, 0, 4) for i in b]
    assert sorted(solo[:12]) == list(range(12)) and sorted(solo[12:]) == list(range(12))
    assert solo[:12] != solo[12:]  # each epoch its own permutation
    # 2 ranks x 3 and 3 ranks x 2 consume the same positions per step as 1 x 6
    for world, batch in ((2, 3), (3, 2), (6, 1)):
        steps = _stream(12, 5, world, batch, 0, 4)
        assert [sorted(s) for s in steps] == [sorted(solo[6 * k:6 * k + 6]) for k in range(4)]
    # ranks are disjoint within a step
    o0, o1 = GlobalOrder(12, 3, 5, 0, 2), GlobalOrder(12, 3, 5, 1, 2)
    assert not {i for i, _ in o0.batch_at(0)} & {i for i, _ in o1.batch_at(0)}


def test_world_size_change_mid_epoch_sees_every_item_once():
    n = 10
    before = _stream(n, 1, 2, 2, 0, 1)       # 4 items on 2 ranks
    after = _stream(n, 1, 1, 3, 4, 2)        # then 6 on one process, batch 3, from position 4
    epoch = [i for b in before + after for i in b]
    assert sorted(epoch) == list(range(n))
    # and the items match what one process would have read at those positions
    solo = [i for b in _stream(n, 1, 1, 1, 0, n) for i in b]
    assert epoch[:4] != [] and sorted(epoch[:4]) == sorted(solo[:4]) and epoch[4:] == solo[4:]


def test_epochs_straddled_by_a_batch_carry_their_epoch():
    o = GlobalOrder(5, 4, 0, 0, 1)
    pairs = o.batch_at(3)  # positions 3..6: two of epoch 0, two of epoch 1
    assert [e for _, e in pairs] == [0, 0, 1, 1]
    assert o.batch_at(3) == pairs  # the two-epoch cache gives the same answer again


def test_empty_dataset_is_an_error():
    with pytest.raises(GenfwError, match="empty"):
        GlobalOrder(0, 2, 0)


class _Algo:
    def __init__(self):
        self.nets = {"net": nn.Linear(2, 2)}
        self.optimizers, self.schedulers = {}, {}

    def extra_state(self):
        return {}

    def extra_tensors(self):
        return {}

    def load_extra(self, state, tensors):
        pass


def test_rank_states_round_trip_through_a_checkpoint(tmp_path):
    g = torch.Generator().manual_seed(4)
    states = [{"rank": r, "rng": {"torch": f"state-{r}"}, "data_position": 7,
               "algorithm": {"count": 10 + r, "nested": {"k": [r, r]}},
               "tensors": {"pool/image": torch.rand(2, 3, generator=g) + r}} for r in range(3)]
    path = ck.save_checkpoint(tmp_path, _Algo(), step=7, images=42, data_position=7, config={},
                              rank_states=states)
    saved = json.loads((path / ck.RANKS_JSON).read_text())
    assert saved["world_size"] == 3
    for r in range(3):
        got = ck.read_rank_state(path, r)
        assert got["algorithm"] == {"count": 10 + r, "nested": {"k": [r, r]}}
        assert got["rng"] == {"torch": f"state-{r}"} and got["data_position"] == 7
        assert torch.equal(got["tensors"]["pool/image"], states[r]["tensors"]["pool/image"])
    assert ck.read_rank_state(path, 3) is None  # a rank the run did not have


def test_single_process_checkpoint_has_no_rank_files(tmp_path):
    path = ck.save_checkpoint(tmp_path, _Algo(), step=1, images=2, data_position=1, config={})
    assert not (path / ck.RANKS_JSON).exists() and ck.read_rank_state(path, 0) is None


def test_tensors_outside_the_tensor_table_are_refused(tmp_path):
    bad = [{"rank": 0, "rng": {}, "algorithm": {"oops": torch.zeros(1)}}]
    with pytest.raises(TypeError, match="outside 'tensors'"):
        ck.save_checkpoint(tmp_path, _Algo(), step=1, images=0, data_position=0, config={}, rank_states=bad)
    assert not list(tmp_path.glob("0*"))  # nothing half-written


def _bn_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4, momentum=None)))


def test_conversion_shares_parameters_and_keeps_the_state_dict():
    torch.manual_seed(0)
    net = _bn_net()
    params = list(net.parameters())
    keys = list(net.state_dict())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net, n = convert_sync_batchnorm(net)
    assert n == 2 and isinstance(net[1], SyncBatchNorm) and isinstance(net[3][1], SyncBatchNorm)
    assert all(a is b for a, b in zip(params, net.parameters()))  # the optimizer still updates them
    assert list(net.state_dict()) == keys
    assert net[3][1].momentum is None
    out = net(torch.rand(2, 3, 8, 8))
    ((out - torch.rand_like(out)) ** 2).mean().backward()  # (a plain sum after BatchNorm has no gradient)
    before = net[1].weight.detach().clone()
    opt.step()
    assert not torch.equal(before, net[1].weight)


def test_sync_batchnorm_in_one_process_is_batchnorm():
    torch.manual_seed(0)
    ref = _bn_net()
    conv, _ = convert_sync_batchnorm(_bn_net())
    conv.load_state_dict(ref.state_dict())
    x = torch.rand(4, 3, 8, 8)
    for mode in (True, False):
        ref.train(mode)
        conv.train(mode)
        assert torch.equal(ref(x), conv(x))
    assert torch.equal(ref[1].running_mean, conv[1].running_mean)


def test_sync_batchnorm_option_defaults_off_and_converts(registry, run_cfg, capsys):
    from genfw.core.trainer import Trainer

    cfg, _ = run_cfg(steps=1)
    assert cfg.train.sync_batchnorm is False
    cfg, resolved = run_cfg(steps=2, sync_batchnorm=True)
    t = Trainer(cfg, resolved, registry, progress=False)
    t.run()
    bns = [m for net in t.algo.nets.values() for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    syncs = [m for net in t.algo.nets.values() for m in net.modules() if isinstance(m, SyncBatchNorm)]
    assert syncs and not bns  # the toy DCGAN's BatchNorm layers were all converted
    assert "one process" in capsys.readouterr().err  # said, not silently ignored



def _two_rank_checkpoint(root, step):
    states = [{"rank": r, "rng": {"torch": f"s{r}"}, "data_position": step, "algorithm": {"n": r},
               "tensors": {"pool": torch.full((2,), float(r))}} for r in range(2)]
    return ck.save_checkpoint(root, _Algo(), step=step, images=0, data_position=step, config={},
                              rank_states=states)


@pytest.mark.parametrize("name", [ck.RANKS_JSON, ck.RANKS_TENSORS])
def test_rank_files_are_under_the_checkpoint_sha256(tmp_path, name):
    path = _two_rank_checkpoint(tmp_path, 1)
    state = ck.verify_checkpoint(path)
    assert name in state["integrity"]["sha256"]
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the file
    (path / name).write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError, match=name):
        ck.verify_checkpoint(path)
    with pytest.raises(ck.CheckpointError, match=name):
        ck.read_rank_state(path, 1)


def test_resume_skips_a_checkpoint_whose_rank_files_are_damaged(tmp_path):
    _two_rank_checkpoint(tmp_path, 1)
    newest = _two_rank_checkpoint(tmp_path, 2)
    (newest / ck.RANKS_JSON).write_text("{}")
    said = []
    path, state = ck.load_for_resume(tmp_path, _Algo(), report=said.append)
    assert path.name == "00000001" and state["step"] == 1
    assert any("00000002" in m and ck.RANKS_JSON in m for m in said)

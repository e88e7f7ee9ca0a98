import math
import platform
import subprocess
import sys

import pytest
import torch

from seq2seq.config import TrainConfig
from seq2seq.training.loss import sequence_loss
from seq2seq.training.optim import build_optimizer, build_scheduler, clip_gradients
from seq2seq.training.step import teacher_forcing_ratio


def make_grads(scale):
    params = [torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(5))]
    torch.manual_seed(0)
    for p in params:
        p.grad = torch.randn_like(p) * scale
    return params


def global_norm(params):
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params))


def test_clip_grad_norm_bounds_the_norm_and_reports_the_norm_before_clipping():
    params = make_grads(100.0)
    before = global_norm(params)
    reported = clip_gradients(params, TrainConfig(clip_grad_norm=1.0))
    assert reported == pytest.approx(before, rel=1e-5)
    assert global_norm(params) == pytest.approx(1.0, rel=1e-4)


def test_small_gradients_are_left_alone():
    params = make_grads(1e-3)
    before = [p.grad.clone() for p in params]
    clip_gradients(params, TrainConfig(clip_grad_norm=1.0))
    assert all(torch.equal(a, p.grad) for a, p in zip(before, params))


def test_clip_grad_value_bounds_every_element():
    params = make_grads(10.0)
    norm = clip_gradients(params, TrainConfig(clip_grad_norm=None, clip_grad_value=0.5))
    assert norm > 0.5
    assert all(float(p.grad.abs().max()) <= 0.5 for p in params)


def test_teacher_forcing_schedules():
    constant = TrainConfig(teacher_forcing_ratio=0.7)
    assert teacher_forcing_ratio(constant, 0) == teacher_forcing_ratio(constant, 10**6) == 0.7
    linear = TrainConfig(
        teacher_forcing_ratio=1.0,
        teacher_forcing_schedule="linear",
        teacher_forcing_min=0.2,
        teacher_forcing_decay_steps=100,
    )
    assert teacher_forcing_ratio(linear, 0) == 1.0
    assert teacher_forcing_ratio(linear, 50) == pytest.approx(0.6)
    assert teacher_forcing_ratio(linear, 1000) == pytest.approx(0.2)
    inv = TrainConfig(teacher_forcing_schedule="inverse_sigmoid", teacher_forcing_k=10.0)
    values = [teacher_forcing_ratio(inv, s) for s in (0, 20, 50, 100, 10**6)]
    assert values[0] > 0.9 and all(a > b for a, b in zip(values, values[1:-1])) and values[-1] < 1e-6


def test_sequence_loss_ignores_padding():
    logits = torch.randn(2, 3, 7)
    target = torch.tensor([[4, 5, 0], [4, 0, 0]])
    full = sequence_loss(logits, target)
    manual = sum(
        torch.nn.functional.cross_entropy(logits[b, t : t + 1], target[b, t : t + 1], reduction="sum")
        for b, t in [(0, 0), (0, 1), (1, 0)]
    )
    torch.testing.assert_close(full, manual)


def test_label_smoothing_penalises_confident_predictions():
    logits = torch.full((1, 1, 5), -10.0)
    logits[0, 0, 4] = 10.0  # all mass on the (correct) token 4
    target = torch.tensor([[4]])
    assert float(sequence_loss(logits, target)) < 1e-6
    assert float(sequence_loss(logits, target, label_smoothing=0.1)) > 1.0


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_cross_entropy_matches_pytorch(monkeypatch, smoothing, dtype):
    """The training loss (gradient formed in the forward pass, rows in slices) equals F.cross_entropy's loss
    and gradient, with padding rows ignored and a row count that is not a multiple of the slice."""
    monkeypatch.setattr("seq2seq.training.loss.ROWS_PER_SLICE", 4)
    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 11) * 3).to(dtype)
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:], target[2, 1:] = 0, 0  # PAD
    ours = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()
    fused = sequence_loss(ours, target, smoothing)
    reference = torch.nn.functional.cross_entropy(
        theirs.reshape(-1, 11).float(), target.reshape(-1), ignore_index=0, label_smoothing=smoothing, reduction="sum"
    )
    (fused * 0.37).backward()
    (reference * 0.37).backward()
    torch.testing.assert_close(fused, reference)
    assert ours.grad.dtype == dtype and float(ours.grad[2, 1:].abs().sum()) == 0.0
    torch.testing.assert_close(ours.grad, theirs.grad)


@pytest.mark.parametrize(
    "name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_optimizers(name, cls):
    params = [torch.nn.Parameter(torch.ones(2))]
    optimizer = build_optimizer(params, TrainConfig(optimizer=name, lr=0.1))
    assert isinstance(optimizer, cls) and optimizer.param_groups[0]["lr"] == 0.1
    params[0].grad = torch.ones(2)
    optimizer.step()
    assert torch.all(params[0] < 1.0)


def test_learning_rate_schedules():
    params = [torch.nn.Parameter(torch.ones(1))]
    constant = build_scheduler(build_optimizer(params, TrainConfig()), TrainConfig(lr_scheduler="none"))
    assert constant.scheduler is None and constant.state_dict() is None

    cfg = TrainConfig(lr=1.0, lr_scheduler="warmup_decay", warmup_steps=4)
    optimizer = build_optimizer(params, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    lrs = []
    for _ in range(16):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.after_update()
        scheduler.after_validation(0.0)  # not a validation-stepped schedule: nothing happens
    assert not scheduler.on_validation
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # linear warm-up
    assert lrs[15] == pytest.approx((4 / 16) ** 0.5)  # then 1/sqrt(step)

    cfg = TrainConfig(lr=1.0, lr_scheduler="plateau", lr_patience=1, lr_decay_factor=0.5)
    optimizer = build_optimizer(params, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    for bleu in (10.0, 12.0, 11.0, 11.5):  # improvement, then two validations without one
        scheduler.after_update()  # a validation-stepped schedule ignores updates
        scheduler.after_validation(bleu)
    assert optimizer.param_groups[0]["lr"] == 0.5


FAULTS = """
import sys, resource, torch
from seq2seq.training.memory import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # like training steps: two 64 MB tensors a round, freed at its end
    x = torch.ones(16 * 1024 * 1024)
    y = x * 2
    del x, y
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="reuse_freed_memory tunes glibc's malloc only")
def test_reused_memory_spares_the_page_faults_of_large_tensors():
    """train.reuse_freed_memory: freed 64 MB blocks are reused, not unmapped and faulted in again each time."""

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1])

    fresh = 20 * 16384  # 20 blocks of 16,384 pages of 4 KB
    assert faults("default") > 0.9 * fresh  # glibc maps each block anew
    assert faults("reuse") < 0.5 * fresh  # the blocks come back from the heap, mostly without faults


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_takes_the_fused_kernel_on_a_cpu_and_updates_as_the_default_one(name):
    torch.manual_seed(0)
    start, grad = torch.randn(50), torch.randn(50)
    params = [torch.nn.Parameter(start.clone())]
    reference = [torch.nn.Parameter(start.clone())]
    cfg = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.1)
    fused = build_optimizer(params, cfg)
    assert fused.defaults["fused"] is True
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    default = cls(reference, lr=0.01, weight_decay=0.1)
    for _ in range(3):
        params[0].grad, reference[0].grad = grad.clone(), grad.clone()
        fused.step()
        default.step()
    assert torch.allclose(params[0], reference[0], atol=1e-6)

"""The speed settings change speed only: compiled, foreach/fused SGD, bf16 Integral and the oneDNN
precision switch give the losses and parameters of the plain run."""

from __future__ import annotations

import copy

import pytest
import torch

from locdistill.config import Config, OptimConfig
from locdistill.engine.build import DetectorLoss
from locdistill.engine.device import amp_settings
from locdistill.engine.optim import build_optimizer
from locdistill.engine.performance import (
    compile_detector,
    compile_training_module,
    set_mkldnn_fp32_precision,
)
from locdistill.models.detectors.gfl import GFL
from locdistill.models.integral import Integral
from locdistill.structures import Batch, ImageMeta, Targets
from tests.helpers import tiny_gfl


def sized_batch(h: int, w: int, seed: int) -> Batch:
    """Two ``h x w`` images with three boxes each, scaled to the image."""
    g = torch.Generator().manual_seed(seed)
    unit = torch.tensor([[0.08, 0.1, 0.45, 0.55], [0.4, 0.3, 0.95, 0.8], [0.05, 0.6, 0.25, 0.9]])
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    targets = [Targets(unit * scale + i, torch.tensor([0, 1, 2])) for i in range(2)]
    metas = [ImageMeta(i, f"img{i}", (h, w), (h, w), (h, w)) for i in range(2)]
    return Batch(torch.randn(2, 3, h, w, generator=g), targets, metas)


def train_losses(model: GFL, sizes: list[tuple[int, int]], steps: int = 10) -> list[dict[str, float]]:
    """``steps`` SGD steps cycling through ``sizes``; the loss terms of every step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for i in range(steps):
        batch = sized_batch(*sizes[i % len(sizes)], seed=i)
        losses = model.loss(model(batch.images), batch.targets, batch.metas)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()  # type: ignore[union-attr]
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return history


@pytest.mark.slow
def test_compiled_training_matches_eager_at_changing_sizes() -> None:
    torch._dynamo.reset()
    sizes = [(128, 128), (96, 160)]  # alternating sizes, one graph compiled with dynamic sizes
    eager = train_losses(tiny_gfl(0), sizes)
    compiled_model = compile_detector(tiny_gfl(0), dynamic=True)
    compiled = train_losses(compiled_model, sizes)
    for step, (e, c) in enumerate(zip(eager, compiled)):
        for k in e:
            assert abs(e[k] - c[k]) <= 1e-4 * max(1.0, abs(e[k])), (step, k, e[k], c[k])
    # The compiled module is the same module: same parameter names, a state dict that loads into eager.
    assert list(compiled_model.state_dict()) == list(tiny_gfl(0).state_dict())
    torch._dynamo.reset()


def test_compile_training_module_compiles_student_and_teacher() -> None:
    student, teacher = tiny_gfl(0), tiny_gfl(1)
    module = torch.nn.Module()
    module.student, module.teacher = student, teacher
    assert compile_training_module(module) == ["student", "teacher"]
    assert compile_training_module(DetectorLoss(tiny_gfl(2))) == ["student"]
    assert student._compiled_call_impl is not None and teacher._compiled_call_impl is not None
    torch._dynamo.reset()


def test_auto_sgd_is_fused_on_cpu_and_pytorchs_choice_elsewhere() -> None:
    model = tiny_gfl(0)
    assert OptimConfig().implementation == "auto"
    assert build_optimizer(model, OptimConfig(), 0.01).defaults["fused"] is True
    meta = torch.nn.Linear(2, 2, device="meta")  # a device the fused kernel does not serve
    defaults = build_optimizer(meta, OptimConfig(), 0.01).defaults
    assert not defaults["fused"] and defaults["foreach"] is None


@pytest.mark.parametrize("implementation", ["foreach", "fused"])
def test_sgd_implementations_give_the_default_updates(implementation: str) -> None:
    reference = tiny_gfl(0)
    other = copy.deepcopy(reference)
    cfg = OptimConfig(momentum=0.9, weight_decay=1e-4, implementation="for-loop")
    opt_ref = build_optimizer(reference, cfg, 0.01)
    opt = build_optimizer(
        other, OptimConfig(momentum=0.9, weight_decay=1e-4, implementation=implementation), 0.01
    )  # type: ignore[arg-type]
    assert opt_ref.defaults["foreach"] is False and not opt_ref.defaults["fused"]
    assert opt.defaults["foreach" if implementation == "foreach" else "fused"] is True
    for i in range(3):
        batch = sized_batch(128, 128, seed=i)
        for model, o in ((reference, opt_ref), (other, opt)):
            losses = model.loss(model(batch.images), batch.targets, batch.metas)
            o.zero_grad(set_to_none=True)
            sum(losses.values()).backward()  # type: ignore[union-attr]
            o.step()
    for (name, a), b in zip(reference.named_parameters(), other.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7, msg=name)


def test_mkldnn_precision_is_set_and_restored() -> None:
    before = torch.backends.mkldnn.conv.fp32_precision
    previous = set_mkldnn_fp32_precision("bf16")
    try:
        assert previous == before
        assert torch.backends.mkldnn.conv.fp32_precision == "bf16"
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    finally:
        set_mkldnn_fp32_precision(previous)
    assert torch.backends.mkldnn.conv.fp32_precision == before


def test_bf16_amp_runs_on_cpu_float16_does_not() -> None:
    cfg = Config()
    cfg.train.amp, cfg.train.amp_dtype = True, "bfloat16"
    assert amp_settings(cfg, torch.device("cpu")) == (True, torch.bfloat16, False)
    cfg.train.amp_dtype = "float16"
    assert amp_settings(cfg, torch.device("cpu"))[0] is False
    cfg.train.amp = False
    assert amp_settings(cfg, torch.device("cpu"))[0] is False


def test_integral_is_float32_under_autocast() -> None:
    integral = Integral(16)
    x = torch.randn(50, 4 * 17) * 3
    exact = integral(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = integral(x.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, integral(x.bfloat16().float()), rtol=0, atol=0)
    assert (exact - got).abs().max() < 0.2  # only the bf16 rounding of the logits themselves


def test_bf16_autocast_step_is_close_to_float32() -> None:
    model = tiny_gfl(0)
    batch = sized_batch(128, 128, seed=0)
    with torch.no_grad():
        ref = model.loss(model(batch.images), batch.targets, batch.metas)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch.images)
            low = model.loss(out, batch.targets, batch.metas)
    assert all(v.dtype == torch.float32 for v in low.values())
    for k in ref:
        torch.testing.assert_close(low[k], ref[k], rtol=5e-2, atol=5e-3, msg=k)

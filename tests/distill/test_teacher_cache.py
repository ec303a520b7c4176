"""The teacher-output cache: a step from the cache equals a step with the live teacher (exactly with
float32 storage, up to float16 rounding otherwise), misses run the teacher, and a folder made with other
settings is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from locdistill.config import Config, CrossKDConfig, DistillConfig, LDTermConfig, VLRConfig
from locdistill.distill.distiller import Distiller
from locdistill.distill.teacher_cache import MANIFEST, TeacherCache, build_teacher_cache, fingerprint
from tests.tolerance import accumulation_rtol

from .helpers import make_batch, sub_batch, tiny_gfl

LD_KEYS = ("loss_cls", "loss_bbox", "loss_dfl", "loss_ld", "loss_ld_vlr", "loss_kd")


def ld_cfg(**kw) -> DistillConfig:
    return DistillConfig(
        main_ld=LDTermConfig(True, 0.25, 10.0),
        vlr_ld=VLRConfig(True, 0.25, 10.0),
        main_kd=LDTermConfig(True, 10.0, 2.0),
        **kw,
    )


def cache_for(root: Path, teacher, cfg: DistillConfig, dtype="float32", anchors="all") -> TeacherCache:
    hold = cfg.crosskd.layer if cfg.crosskd.enabled else None
    vlr = (cfg.vlr_ld.alpha_low, cfg.vlr_ld.diou) if cfg.vlr_ld.enabled else None
    return TeacherCache(root, {"teacher": fingerprint(teacher), "hold_depth": hold}, dtype, anchors, vlr)


def step(module: Distiller, batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One SGD step; returns the losses and the student's weights after it."""
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    losses = module(batch)
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()
    return {k: v.detach() for k, v in losses.items()}, {
        k: v.clone() for k, v in module.student.state_dict().items()
    }


def _pair(tmp_path: Path, cfg: DistillConfig, dtype="float32", anchors="all", **teacher_kw):
    teacher = tiny_gfl(1, **teacher_kw)
    live = Distiller(tiny_gfl(0), teacher, cfg)
    cached = Distiller(
        tiny_gfl(0), teacher, cfg, cache=cache_for(tmp_path / "c", teacher, cfg, dtype, anchors)
    )
    return live, cached


@pytest.mark.parametrize("anchors", ["all", "needed"])
def test_ld_step_from_a_float32_cache_equals_the_live_step(tmp_path: Path, anchors: str) -> None:
    live, cached = _pair(tmp_path, ld_cfg(), "float32", anchors)
    batch = make_batch()
    with torch.no_grad():
        cached(batch)  # the first epoch: misses, written
    assert (cached.cache.hits, cached.cache.misses) == (0, 2)
    losses_live, weights_live = step(live, batch)
    losses_cache, weights_cache = step(cached, batch)
    assert (cached.cache.hits, cached.cache.misses) == (2, 2)
    for k in LD_KEYS:
        torch.testing.assert_close(losses_cache[k], losses_live[k], rtol=0, atol=0, msg=k)
    for k in weights_live:
        torch.testing.assert_close(weights_cache[k], weights_live[k], rtol=0, atol=0, msg=k)


def test_ld_step_from_a_float16_cache_is_within_float16_rounding(tmp_path: Path) -> None:
    live, cached = _pair(tmp_path, ld_cfg(), "float16")
    initial = {k: v.clone() for k, v in live.student.state_dict().items()}
    batch = make_batch()
    with torch.no_grad():
        cached(batch)
    losses_live, weights_live = step(live, batch)
    losses_cache, weights_cache = step(cached, batch)
    assert cached.cache.hits == 2
    for k in LD_KEYS:
        torch.testing.assert_close(losses_cache[k], losses_live[k], rtol=2e-3, atol=1e-6, msg=k)
    for k in weights_live:  # the step (weight change) of every tensor within a few percent
        if weights_live[k].is_floating_point():
            d_live, d_cache = weights_live[k] - initial[k], weights_cache[k] - initial[k]
            assert float((d_live - d_cache).norm()) <= 0.05 * float(d_live.norm()) + 1e-9, k
    entry = torch.load(next((tmp_path / "c").rglob("*.pt")), weights_only=True)
    assert entry["cls"].dtype == torch.float16 and entry["reg"].dtype == torch.float16


def test_needed_anchors_store_less_than_all(tmp_path: Path) -> None:
    teacher = tiny_gfl(1)
    cfg = ld_cfg()
    sizes = {}
    for anchors in ("all", "needed"):
        module = Distiller(
            tiny_gfl(0), teacher, cfg, cache=cache_for(tmp_path / anchors, teacher, cfg, anchors=anchors)
        )
        with torch.no_grad():
            module(make_batch(num_images=1))
        (path,) = list((tmp_path / anchors).rglob("*.pt"))
        sizes[anchors] = torch.load(path, weights_only=True)["reg"].shape[0]
    batch = make_batch(1)
    assignment = module.student.assign(module.student(batch.images), batch.targets, batch.metas)
    assert sizes["all"] == assignment.anchors.shape[0]
    assert sizes["needed"] == int(module.cache.needed_anchors(assignment, batch.targets).sum())
    assert sizes["needed"] < sizes["all"]


def test_partial_hits_run_the_teacher_on_the_missing_images_only(tmp_path: Path) -> None:
    live, cached = _pair(tmp_path, ld_cfg())
    batch = make_batch(num_images=3)
    calls = []
    real = cached.teacher.forward

    def counting(images):
        calls.append(images.shape[0])
        return real(images)

    cached.teacher.forward = counting  # type: ignore[method-assign]
    with torch.no_grad():
        cached(sub_batch(batch, [0, 1]))
        second = cached(sub_batch(batch, [1, 2]))
        assert calls == [2, 1]
        reference = live(sub_batch(batch, [1, 2]))
    assert (cached.cache.hits, cached.cache.misses) == (1, 3)
    # Image 1's teacher outputs were computed within another batch: equal up to float32 summation order
    # (tests/tolerance.py) through the teacher's 11 stacked layers (backbone 4, FPN with P6 and P7 4, head
    # 3) of at most 9 * 32 products; the losses are smooth in them, so the relative bound carries over.
    rtol = accumulation_rtol(reduction=9 * 32, depth=11)
    for k in LD_KEYS:
        torch.testing.assert_close(second[k], reference[k], rtol=rtol, atol=1e-7, msg=k)


def test_another_flip_or_size_misses(tmp_path: Path) -> None:
    _, cached = _pair(tmp_path, ld_cfg())
    with torch.no_grad():
        cached(make_batch())
        cached(make_batch(flipped=True))
        cached(make_batch(size=96))
        cached(make_batch())
    assert (cached.cache.hits, cached.cache.misses) == (2, 6)
    assert cached.log_stats() == {"cache_hits": 2.0, "cache_misses": 6.0, "cache_hit_rate": 0.25}
    assert cached.log_stats() == {"cache_hits": 0.0, "cache_misses": 0.0, "cache_hit_rate": 0.0}
    root = tmp_path / "c"
    assert len(list(root.rglob("*.pt"))) == 6
    assert not list(root.rglob("*.tmp")) and not list(root.rglob(".*"))


def test_crosskd_from_the_cache_equals_live(tmp_path: Path) -> None:
    cfg = ld_cfg(crosskd=CrossKDConfig(True, layer=1))
    live, cached = _pair(tmp_path, cfg)
    batch = make_batch()
    with torch.no_grad():
        cached(batch)
    losses_live, weights_live = step(live, batch)
    losses_cache, weights_cache = step(cached, batch)
    assert cached.cache.hits == 2
    assert {"loss_crosskd_cls", "loss_crosskd_reg"} <= set(losses_cache)
    for k in losses_live:  # the hold statistics come back from per-image float64 sums: same numbers
        torch.testing.assert_close(losses_cache[k], losses_live[k], rtol=0, atol=0, msg=k)
    for k in weights_live:
        torch.testing.assert_close(weights_cache[k], weights_live[k], rtol=0, atol=0, msg=k)


def test_teacher_with_its_own_normalisation_reads_the_same_from_the_cache(tmp_path: Path) -> None:
    live, cached = _pair(tmp_path, ld_cfg(), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert live._renorm
    batch = make_batch()
    with torch.no_grad():
        cached(batch)
        got, expected = cached(batch), live(batch)
    for k in LD_KEYS:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0, msg=k)


def test_a_folder_made_with_other_settings_is_refused(tmp_path: Path) -> None:
    teacher, other = tiny_gfl(1), tiny_gfl(2)
    cache_for(tmp_path / "c", teacher, ld_cfg())
    cache_for(tmp_path / "c", teacher, ld_cfg())  # same settings: reopened
    with pytest.raises(ValueError, match=r"other settings \(teacher: '[0-9a-f]+' there vs '[0-9a-f]+' now\)"):
        cache_for(tmp_path / "c", other, ld_cfg())
    with pytest.raises(ValueError, match="dtype"):
        cache_for(tmp_path / "c", teacher, ld_cfg(), dtype="float16")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not a locdistill teacher cache"):
        cache_for(foreign, teacher, ld_cfg())
    assert (foreign / "notes.txt").read_text() == "keep me" and not (foreign / MANIFEST).exists()


def test_needed_anchors_cannot_serve_crosskd(tmp_path: Path) -> None:
    cfg = Config(
        distill=DistillConfig(
            cache=str(tmp_path / "c"), cache_anchors="needed", crosskd=CrossKDConfig(True, layer=1)
        )
    )
    with pytest.raises(ValueError, match="cache_anchors=needed cannot serve CrossKD"):
        build_teacher_cache(cfg, tiny_gfl(0), tiny_gfl(1))
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_two_ranks_write_their_own_images_and_read_each_others(tmp_path: Path) -> None:
    from locdistill.config import dump_config, load_config
    from locdistill.engine.train import train
    from tests.engine.test_distributed import read_jsonl, run_torchrun, tiny_yaml, torchrun
    from tests.helpers import tiny_overrides

    if torchrun() is None:
        pytest.skip("torchrun is not installed")
    cfg = tiny_yaml(tmp_path)
    overrides = [*tiny_overrides(tmp_path / "data"), "data.flip_prob=0.0"]
    teacher_cfg = load_config(cfg, [*overrides, "train.max_iters=1", "model.head.feat_channels=48"])
    teacher_ckpt = train(teacher_cfg, tmp_path / "teacher")
    dump_config(teacher_cfg, tmp_path / "teacher.yaml")
    work, cache = tmp_path / "student", tmp_path / "cache"
    distill = [
        f"distill.teacher_config={tmp_path / 'teacher.yaml'}",
        f"distill.teacher_checkpoint={teacher_ckpt}",
        "distill.crosskd.enabled=true",
        "distill.crosskd.layer=1",
        "distill.crosskd.adapter=true",
        f"distill.cache={cache}",
    ]
    # 12 images, 2 ranks x 2 images: 3 iterations per epoch, logged once per epoch
    run_torchrun(
        ["train", str(cfg), "--work-dir", str(work), "--set", *overrides, *distill, "train.log_interval=3"],
        tmp_path,
    )
    rank0, rank1 = read_jsonl(work / "metrics.jsonl"), read_jsonl(work / "metrics.rank1.jsonl")
    for a, b in zip(rank0, rank1, strict=True):  # counts summed over the ranks, losses averaged
        for key in ("cache_hits", "cache_misses", "loss_crosskd_cls", "loss_crosskd_reg", "loss_ld"):
            assert a[key] == b[key], key
    assert [(r["cache_hits"], r["cache_misses"]) for r in rank0] == [(0, 12), (12, 0)]
    assert len(list(cache.rglob("*.pt"))) == 12 and not list(cache.rglob(".*.tmp"))
    ckpt = torch.load(work / "latest.pth", weights_only=True, map_location="cpu")
    assert set(ckpt["distill"]) >= {"cls_adapter.weight", "reg_adapter.weight"}

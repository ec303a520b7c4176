"""The training-speed benchmark scripts: ``bench_train_step.py`` (mmdetection's protocol) writes its JSON,
``summarize_before_after.py`` reads its runs, ``bench_distill_epoch.py`` times the live and the cached
teacher, ``gpu.sh`` / ``bench_gpu.py`` refuse to run without CUDA and check themselves on the CPU with
--dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, SHARED

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_gpu  # noqa: E402
import bench_train_step  # noqa: E402
import summarize_before_after  # noqa: E402


def run_script(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    # PYTHON: the interpreter the shell scripts run (this test's, whether or not its venv is activated)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHON": sys.executable}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_variant_names_parse_into_settings() -> None:
    v = bench_train_step.Variant.parse("compile+channels_last+foreach")
    assert (v.compile, v.channels_last, v.sgd, v.bf16, v.mkldnn) == (True, True, "foreach", False, "none")
    v = bench_train_step.Variant.parse("bf16+mkldnn_bf16+fused")
    assert (v.bf16, v.mkldnn, v.sgd, v.compile) == (True, "bf16", "fused", False)
    assert bench_train_step.Variant.parse("forloop").sgd == "for-loop"
    assert bench_train_step.Variant.parse("eager").sgd == "auto"  # the config's default
    with pytest.raises(SystemExit, match="unknown variant setting.*'fast'"):
        bench_train_step.Variant.parse("eager+fast")


def test_preprocess_is_bgr_to_rgb_normalise_and_pad() -> None:
    raw = bench_train_step.random_inputs(2, 50, 3, 80)
    from locdistill.data.transforms import Normalize

    batch = bench_train_step.preprocess(raw, Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)))
    assert batch.images.shape == (2, 3, 64, 64) and batch.images.dtype == torch.float32
    rgb = raw["images"][1].flip(0).float() / 255
    mean, std = torch.tensor([0.5, 0.4, 0.3])[:, None, None], torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    torch.testing.assert_close(batch.images[1, :, :50, :50], (rgb - mean) / std, rtol=1e-5, atol=1e-5)
    assert float(batch.images[:, :, 50:].abs().sum()) == 0.0
    assert [m.pad_shape for m in batch.metas] == [(64, 64), (64, 64)]
    assert all(len(t) == 3 for t in batch.targets)


def test_summary_reports_ratios_and_the_ld_target() -> None:
    s = bench_train_step.summary([1.0, 2.0, 1.0], [2.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert s["plain_step"]["median_s"] == 1.0 and s["ld_step"]["max_s"] == 3.0
    assert s["ld_over_plain"] == 2.0 and s["ld_minus_plain_over_teacher"] == 1.0 and s["ld_target_met"]
    assert not bench_train_step.summary([1.0], [2.2], [1.0])["ld_target_met"]
    r = bench_train_step.ratio_stats([1.0, 3.0, 2.0], [2.0, 2.0, 2.0])
    assert (r["median"], r["min"], r["max"]) == (1.0, 0.5, 1.5)


@pytest.mark.slow
def test_bench_train_step_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "train_step.json"
    script = str(ROOT / "benchmarks" / "bench_train_step.py")
    args = ["--size", "64", "--iters", "1", "--warmup", "1", "--threads", "1"]
    proc = run_script(
        [sys.executable, script, *args, "--variants", "eager,channels_last+foreach", "--out", str(out)]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    ours = payload["results"]["locdistill"]
    assert set(ours) == {"eager", "channels_last+foreach"}
    for result in ours.values():
        for part in ("plain_step", "ld_step", "teacher_forward"):
            assert result[part]["median_s"] > 0 and result[part]["n"] == 1
        assert result["ld_over_plain"] > 0
    assert payload["results"]["mmdetection"] == {} and payload["setup"]["size"] == 64


def test_gpu_script_fails_clearly_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = run_script(["bash", str(ROOT / "benchmarks" / "gpu.sh")], timeout=300)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: benchmarks/bench_gpu.py needs a CUDA device")
    )


def test_gpu_arguments_parse_and_are_checked() -> None:
    args = bench_gpu.parse_args([])
    assert (args.batch, args.height, args.width) == (16, 800, 1333)
    assert args.precisions == ["bf16", "fp16", "fp32"] and args.kinds == ["plain", "ld"]
    assert "channels_last+compile" in args.variants
    dry = bench_gpu.parse_args(["--dry-run", "--precisions", "fp32", "--kinds", "ld"])
    assert (dry.batch, dry.height, dry.width, dry.iters) == (2, 64, 96, 1)
    for bad in (["--precisions", "fp8"], ["--variants", "eager+turbo"], ["--kinds", "plain,kd"]):
        with pytest.raises(SystemExit):
            bench_gpu.parse_args(bad)


def test_gpu_dry_run_on_cpu_writes_images_per_second(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    argv = ["--dry-run", "--variants", "eager,channels_last", "--precisions", "fp32,bf16", "--out", str(out)]
    proc = run_script(["bash", str(ROOT / "benchmarks" / "gpu.sh"), *argv])
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["setup"]["dry_run"] is True and payload["setup"]["device"] == "cpu"
    rows = payload["results"]
    assert {(r["precision"], r["variant"], r["kind"]) for r in rows} == {
        (p, v, k) for p in ("fp32", "bf16") for v in ("eager", "channels_last") for k in ("plain", "ld")
    }
    assert all(r["images_per_s"] == pytest.approx(2 / r["median_s"]) for r in rows)


def test_the_json_names_the_timed_source_and_before_after_summarises_it(tmp_path: Path) -> None:
    assert bench_train_step.source_revision()["package"] == str(ROOT / "src" / "locdistill")

    def payload(rev: str, plain: float, ratio: float) -> dict:
        step = {"plain_step": {"median_s": plain}, "ld_step": {"median_s": 2 * plain}}
        vs = {"step_time_ratio": {"plain": {"median": ratio}, "ld": {"median": ratio + 0.1}}}
        return {
            "setup": {"locdistill_source": {"git_rev": rev}},
            "results": {"locdistill": {"eager": step}, "versus_mmdetection": {"eager": vs}},
        }

    for name, (rev, plain, ratio) in {
        "before_1": ("aaa", 2.0, 1.10),
        "before_2": ("aaa", 2.2, 1.14),
        "after_1": ("bbb", 1.8, 1.00),
        "after_2": ("bbb", 1.9, 1.04),
    }.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(payload(rev, plain, ratio)))
    summary = summarize_before_after.summarize(tmp_path)
    assert summary["before"]["revisions"] == ["aaa", "aaa"]
    after = summary["after"]["variants"]["eager"]
    assert after["plain"]["step_median_s_per_run"] == [1.8, 1.9]
    assert after["plain"]["vs_mmdetection_median"] == pytest.approx(1.02)
    assert summary["before"]["variants"]["eager"]["ld"]["vs_mmdetection_per_run"] == [1.2, 1.24]


@pytest.mark.skipif(not (SHARED / "data" / "bccd" / "BCCD").is_dir(), reason="shared/data/bccd is absent")
def test_bench_distill_epoch_times_live_and_cached_teachers_on_bccd(tmp_path: Path) -> None:
    out = tmp_path / "distill_epoch.json"
    script = str(ROOT / "benchmarks" / "bench_distill_epoch.py")
    proc = run_script([sys.executable, script, "--iters", "2", "--repeats", "1", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    variants = {"plain", "ld_live", "ld_cache_epoch2", "ld_cache_hits", "crosskd_live", "crosskd_cache_hits"}
    assert set(results["seconds_per_iteration"]) == variants
    assert all(v["median_s"] > 0 for v in results["seconds_per_iteration"].values())
    hits = results["cache_hit_rate_timed"]
    assert hits["ld_cache_hits"] == 1.0 and hits["crosskd_cache_hits"] == 1.0  # the teacher never ran
    assert 0.0 <= hits["ld_cache_epoch2"] <= 1.0

"""``locdistill predict`` loses nothing: inputs are never written over (also with ``--out`` the input
folder), outputs never collide, a bad image does not cost the others' ``detections.json``; inputs may be
files, folders, globs and videos."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from locdistill.cli import main
from locdistill.config import load_config, to_dict
from locdistill.engine.checkpoint import save_checkpoint
from locdistill.engine.predict import collect_inputs, output_paths
from locdistill.models.detectors.gfl import build_gfl

TINY_YAML = """\
model:
  backbone: {name: resnet18, base_width: 8, pretrained: false}
  neck: {out_channels: 16}
  head: {num_classes: 3, feat_channels: 16, stacked_convs: 1, norm_groups: 4}
  test: {score_thr: 0.0}
data:
  img_scale: [64, 64]
  train: {format: synthetic, root: unused, classes: [a, b, c]}
  val: {format: synthetic, root: unused}
"""


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``(config file, checkpoint)`` of a tiny random-weight detector."""
    root = tmp_path_factory.mktemp("detector")
    config = root / "tiny.yaml"
    config.write_text(TINY_YAML)
    cfg = load_config(config)
    torch.manual_seed(0)
    model = build_gfl(cfg.model)
    ckpt = save_checkpoint(root / "w.pth", {"model": model.state_dict(), "config": to_dict(cfg), "meta": {}})
    return str(config), str(ckpt)


def photo(path: Path, seed: int = 0, size: tuple[int, int] = (48, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def test_output_names_are_unique_and_never_an_input(tmp_path: Path) -> None:
    a_png, a_bmp = photo(tmp_path / "in" / "a.png"), photo(tmp_path / "in" / "a.bmp", 1)
    other_a = photo(tmp_path / "in2" / "a.png", 2)
    b_tif = photo(tmp_path / "in" / "B.tif", 3)
    b_png_upper = photo(tmp_path / "in" / "b_tif.PNG", 4)
    out = tmp_path / "out"
    names = [p.name for p in output_paths([a_png, a_bmp, other_a, b_tif, b_png_upper], out)]
    assert names == ["a.png", "a_bmp.png", "a_det.png", "B_tif.png", "b_tif_det.PNG"]
    # --out is the input folder: no output lands on an input, also not on one reached through a link
    (tmp_path / "in" / "link.png").symlink_to(a_png)
    inputs = [a_png, a_bmp, tmp_path / "in" / "link.png"]
    outs = output_paths(inputs, tmp_path / "in")
    assert [p.name for p in outs] == ["a_det.png", "a_bmp.png", "link_det.png"]


def test_folders_globs_and_files_are_collected_once(tmp_path: Path) -> None:
    x, y = photo(tmp_path / "d" / "x.jpg"), photo(tmp_path / "d" / "y.png")
    (tmp_path / "d" / "notes.txt").write_text("not an image")
    z = photo(tmp_path / "d" / "sub" / "z.png")
    got = collect_inputs([str(tmp_path / "d"), str(tmp_path / "d" / "**" / "*.png"), str(x)])
    assert got == [x, y, z]
    with pytest.raises(FileNotFoundError, match=r"no image or video files match .*\*\.gif"):
        collect_inputs([str(tmp_path / "d" / "*.gif")])
    with pytest.raises(FileNotFoundError, match=r"input not found: .*missing\.jpg"):
        collect_inputs([str(tmp_path / "missing.jpg")])
    with pytest.raises(FileNotFoundError, match=r"no image or video files in folder .*empty"):
        (tmp_path / "empty").mkdir()
        collect_inputs([str(tmp_path / "empty")])


def test_predict_into_the_input_folder_keeps_the_inputs(
    detector: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ckpt = detector
    folder = tmp_path / "photos"
    photo(folder / "a.png")
    photo(folder / "a.bmp", 1)
    photo(folder / "c.jpg", 2)
    before = digest(folder)
    assert main(["predict", config, ckpt, str(folder), "--out", str(folder), "--score-thr", "0"]) == 0
    after = digest(folder)
    assert {k: after[k] for k in before} == before  # every input byte for byte
    assert set(after) - set(before) == {"a_det.png", "a_bmp.png", "c_det.jpg", "detections.json"}
    listing = json.loads((folder / "detections.json").read_text())
    assert [Path(r["output"]).name for r in listing] == ["a_bmp.png", "a_det.png", "c_det.jpg"]
    assert all(r["detections"] and r["detections"][0]["class"] in ("a", "b", "c") for r in listing)


def test_a_bad_image_does_not_cost_the_others_results(
    detector: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ckpt = detector
    good1, good2 = photo(tmp_path / "1.png"), photo(tmp_path / "3.png", 1)
    bad = tmp_path / "2.png"
    bad.write_bytes(good1.read_bytes()[:60])  # truncated
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(["predict", config, ckpt, str(good1), str(bad), str(good2), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    last = err.splitlines()[-1]  # log lines may come before it
    assert last.startswith("error: 1 of 3 input(s) could not be read") and str(bad) in last
    assert "Traceback" not in err
    listing = json.loads((out / "detections.json").read_text())
    assert [Path(r["image"]).name for r in listing] == ["1.png", "3.png"]
    assert (out / "1.png").is_file() and (out / "3.png").is_file() and not (out / "2.png").exists()


def test_a_missing_input_fails_before_the_model_is_loaded(
    detector: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = detector
    missing = tmp_path / "nope.jpg"
    code = main(["predict", config, str(tmp_path / "no_weights.pth"), str(missing), "--out", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: input not found: {missing}"


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_predict_on_a_video_writes_an_annotated_video(
    detector: tuple[str, str], tmp_path: Path, suffix: str
) -> None:
    av = pytest.importorskip("av")
    config, ckpt = detector
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    clip = write_video(tmp_path / f"clip{suffix}", frames)
    out = tmp_path / "out"
    assert main(["predict", config, ckpt, str(clip), "--out", str(out), "--score-thr", "0"]) == 0
    target = out / ("clip.mp4" if suffix == ".mp4" else "clip_avi.mp4")
    with av.open(str(target)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        rate = container.streams.video[0].average_rate
    assert len(decoded) == 5 and decoded[0].shape == (48, 64, 3)
    assert float(rate) == pytest.approx(10.0)
    (record,) = json.loads((out / "detections.json").read_text())
    assert record["video"] == str(clip) and record["output"] == str(target)
    assert (record["height"], record["width"], record["fps"]) == (48, 64, pytest.approx(10.0))
    assert [f["frame"] for f in record["frames"]] == [0, 1, 2, 3, 4]
    assert all(f["detections"] for f in record["frames"])  # score_thr 0: boxes drawn on every frame
    # the boxes are drawn: the output differs from the input beyond the codec's loss
    assert np.abs(decoded[0].astype(int) - frames[0].astype(int)).max() > 100

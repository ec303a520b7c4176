"""Regenerate ``src/locdistill/zoo/models.yaml`` from mmdetection's model-zoo metafiles.

Reads ``configs/gfl/metafile.yml`` and ``configs/ld/metafile.yml`` of an installed mmdetection (3.3.0:
``site-packages/mmdet/.mim/configs``) as YAML (mmdetection is not imported): name, box AP, weights
URL, the SHA-256 prefix in the file name and the mmdetection config. An LD student's teacher is the
``teacher_ckpt`` URL in its mmdetection config (following ``_base_``). Added here: the shipped
locdistill config each checkpoint loads into (:data:`LOCDISTILL_CONFIG`) and, from the shipped LD
configs, which of them name the file as ``distill.teacher_checkpoint``.

Run with locdistill importable (``PYTHONPATH=src``)::

    python tools/zoo_table.py --mmdet-configs /path/to/site-packages/mmdet/.mim/configs
    python tools/zoo_table.py --mmdet-configs ... --check     # exit 1 when models.yaml differs
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "locdistill" / "zoo" / "models.yaml"
CONFIGS = ROOT / "src" / "locdistill" / "configs"
METAFILES = {"gfl": "gfl/metafile.yml", "ld": "ld/metafile.yml"}

LOCDISTILL_CONFIG = {
    "gfl_r50_fpn_1x_coco": "gfl/gfl_r50_fpn_coco_1x",
    "gfl_r50_fpn_ms-2x_coco": "gfl/gfl_r50_fpn_coco_2x",
    "gfl_r101_fpn_ms-2x_coco": "gfl/gfl_r101_fpn_coco_2x",
    "gfl_r101-dconv-c3-c5_fpn_ms-2x_coco": "gfl/gfl_r101_dcn_fpn_coco_2x",
    "gfl_x101-32x4d_fpn_ms-2x_coco": "gfl/gfl_x101_32x4d_fpn_coco_2x",
    "gfl_x101-32x4d-dconv-c4-c5_fpn_ms-2x_coco": "gfl/gfl_x101_32x4d_dcn_fpn_coco_2x",
    "ld_r18-gflv1-r101_fpn_1x_coco": "ld/ld_gflv1_r101_r18_fpn_coco_1x",
    "ld_r34-gflv1-r101_fpn_1x_coco": "ld/ld_gflv1_r101_r34_fpn_coco_1x",
    "ld_r50-gflv1-r101_fpn_1x_coco": "ld/ld_gflv1_r101_r50_fpn_coco_1x",
    "ld_r101-gflv1-r101-dcn_fpn_2x_coco": "ld/ld_gflv1_r101dcn_r101_fpn_coco_2x",
}
"""mmdetection model name -> the shipped locdistill config its weights load into (by hand; an LD
student's is its LD config, whose ``model`` is the student)."""

HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.pth$")


def find_mmdet_configs() -> Path | None:
    """``mmdet/.mim/configs`` of an importable mmdetection (located, not imported), else ``None``."""
    spec = importlib.util.find_spec("mmdet")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / ".mim" / "configs"
    return path if path.is_dir() else None


def metafile_facts(configs: Path) -> list[dict[str, Any]]:
    """The facts of every model in the GFL and LD metafiles, in their order."""
    out = []
    for kind, rel in METAFILES.items():
        data = yaml.safe_load((configs / rel).read_text(encoding="utf-8"))
        for model in data["Models"]:
            url = str(model["Weights"])
            found = HASH_IN_NAME.search(url)
            if found is None:
                raise ValueError(f"{rel}: {model['Name']}: no hash prefix in the file name of {url}")
            (result,) = [r for r in model["Results"] if r["Task"] == "Object Detection"]
            out.append(
                {
                    "name": str(model["Name"]),
                    "kind": kind,
                    "box_ap": float(result["Metrics"]["box AP"]),
                    "url": url,
                    "sha256_prefix": found.group(1),
                    "mmdet_config": str(model["Config"]),
                }
            )
    return out


def teacher_url(configs: Path, mmdet_config: str) -> str | None:
    """The ``teacher_ckpt`` URL of an mmdetection LD config, following its ``_base_`` files."""
    path = configs.parent / mmdet_config if mmdet_config.startswith("configs/") else configs / mmdet_config
    for _ in range(8):
        text = path.read_text(encoding="utf-8")
        found = re.search(r"^teacher_ckpt\s*=\s*'([^']+)'", text, re.MULTILINE)
        if found:
            return found.group(1)
        base = re.search(r"^_base_\s*=\s*\[?\s*'([^']+)'", text, re.MULTILINE)
        if base is None:
            return None
        path = (path.parent / base.group(1)).resolve()
    return None


def teacher_of(file_name: str) -> list[str]:
    """Shipped LD configs whose ``distill.teacher_checkpoint`` has the file name ``file_name``."""
    from locdistill.config import load_config

    out = []
    for path in sorted((CONFIGS / "ld").glob("*.yaml")):
        distill = load_config(path).distill
        if distill is not None and Path(distill.teacher_checkpoint).name == file_name:
            out.append(f"ld/{path.stem}")
    return out


def build_table(configs: Path) -> dict[str, Any]:
    """The content of ``models.yaml``."""
    facts = metafile_facts(configs)
    by_url = {f["url"]: f["name"] for f in facts}
    models = []
    for fact in facts:
        name = fact["name"]
        if name not in LOCDISTILL_CONFIG:
            raise ValueError(f"{name}: add the locdistill config it loads into to LOCDISTILL_CONFIG")
        entry = dict(fact, config=LOCDISTILL_CONFIG[name])
        if fact["kind"] == "ld":
            url = teacher_url(configs, fact["mmdet_config"])
            entry["teacher"] = by_url.get(url or "")
        entry["teacher_of"] = teacher_of(fact["url"].rsplit("/", 1)[-1])
        models.append(entry)
    return {"models": models}


def render(table: dict[str, Any]) -> str:
    header = (
        "# The released mmdetection GFL and LD checkpoints (`locdistill zoo`). Generated by\n"
        "# tools/zoo_table.py from mmdetection 3.3.0's configs/gfl/metafile.yml and\n"
        "# configs/ld/metafile.yml; `config` (the locdistill config the weights load into) and\n"
        "# `teacher_of` (shipped LD configs whose distill.teacher_checkpoint is this file) are added\n"
        "# there. Do not edit by hand.\n"
    )
    return header + yaml.safe_dump(table, sort_keys=False, width=200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mmdet-configs", type=Path, help="mmdet/.mim/configs (default: the installed mmdet's)"
    )
    parser.add_argument("--check", action="store_true", help="compare with models.yaml instead of writing it")
    args = parser.parse_args(argv)
    configs = args.mmdet_configs or find_mmdet_configs()
    if configs is None:
        parser.error("mmdetection is not installed here: give --mmdet-configs")
    table = build_table(configs)
    text = render(table)
    if args.check:
        same = TABLE.read_text(encoding="utf-8") == text
        print(f"{TABLE}: {'up to date' if same else 'differs from the metafiles (rerun without --check)'}")
        return 0 if same else 1
    TABLE.write_text(text, encoding="utf-8")
    print(f"wrote {TABLE} ({len(table['models'])} checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

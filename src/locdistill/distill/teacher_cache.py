"""A disk cache of the frozen teacher's outputs, so that later epochs need not run the teacher.

One file per (image, horizontal flip, resized size, padded batch size): the teacher's raw outputs of
that image, one row per prior of all levels (``[A, C]`` class and ``[A, 4*(R+1)]`` distribution logits,
as the teacher's ``flatten`` gives them), in ``float16`` or ``float32``, at every prior (``all``) or
only at the priors where LD reads them (``needed``: the positives, where Main LD and Main KD act, and
the second LD region of the student's family, e.g. the VLR, both fixed by the ground truth and the
priors). With CrossKD the per-image sums of the teacher's hold features come too
(float64, see :class:`~locdistill.distill.crosskd.TeacherResult`); the cross-head pass itself (the
teacher's remaining tower convs on the *student's* features) always runs live.

The padded batch size is part of the key because the teacher's outputs near an image's border depend on
the padding the batch adds. A lookup that misses (another scale or flip, a new batch size, a first
epoch) runs the teacher on the missing images only (the outputs of an image do not depend on the other
images of the batch: the teacher is in eval mode and its norms are per-sample or frozen) and stores
them. With ``float32`` a step from the cache equals a step with the live teacher; with ``float16`` it
equals it up to float16 rounding of the logits.

``cache.json`` in the folder records what the entries were made with (a fingerprint of the teacher's
weights, its input normalisation, the training data, dtype, anchors, CrossKD's depth); a folder made
with other settings is refused with a one-line error. Each rank writes only the images of its own
batches; every file is written to a temporary name and renamed, so readers never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from locdistill.config import Config
from locdistill.distill.crosskd import TeacherResult, teacher_depth
from locdistill.distill.regions import second_region
from locdistill.models.assigners.assignment import Assignment
from locdistill.models.detectors.base import DenseDetector, FlatOutputs, SecondRegion
from locdistill.structures import Batch, ImageMeta, Targets
from locdistill.utils.dist import get_rank, get_world_size, is_distributed

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "cache.json"


def cache_key(meta: ImageMeta, batch_hw: tuple[int, int]) -> str:
    """The identity of one image's teacher outputs: file, id, flip, resized size, padded batch size."""
    h, w = meta.img_shape
    return (
        f"{meta.file_name}|{meta.image_id}|flip={int(meta.flipped)}|{h}x{w}|pad={batch_hw[0]}x{batch_hw[1]}"
    )


def fingerprint(module: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a module's state dict."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class _Pending:
    """Teacher outputs computed this step, to be written once the needed anchors are known."""

    batch_index: int
    key: str
    cls: Tensor
    reg: Tensor
    hold: Tensor | None


def _num_priors(entry: dict[str, Tensor]) -> int:
    """The prior count of the outputs an entry was cut from (entries of format 1 store the level sizes
    of a one-anchor-per-cell head instead)."""
    if "num_priors" in entry:
        return int(entry["num_priors"])
    return int(sum(int(h) * int(w) for h, w in entry["sizes"].tolist()))


class TeacherCache:
    """Teacher outputs on disk, keyed by :func:`cache_key`.

    Args:
        root: the folder (created if missing; refused if it holds anything but a cache of ``settings``).
        settings: what the entries depend on besides the key (written to ``cache.json``).
        dtype: storage precision of the logits.
        anchors: ``all`` or ``needed`` (positives and, with ``vlr``, the second LD region's priors).
        vlr: ``(alpha_low, diou mode)`` of VLR LD when it is on (``needed`` stores its anchors too).
        second_region: the kind of the student family's second LD region (``LDSpec.second_region``).
    """

    def __init__(
        self,
        root: str | Path,
        settings: dict[str, Any],
        dtype: Literal["float16", "float32"] = "float16",
        anchors: Literal["all", "needed"] = "all",
        vlr: tuple[float, Literal["official", "true"]] | None = None,
        second_region: SecondRegion = "vlr",
    ) -> None:
        self.root = Path(root)
        self.dtype = torch.float16 if dtype == "float16" else torch.float32
        self.anchors = anchors
        self.vlr = vlr
        self.second_region: SecondRegion = second_region
        self.settings = {"format": FORMAT_VERSION, **settings, "dtype": dtype, "anchors": anchors}
        if anchors == "needed":
            self.settings["vlr"] = list(vlr) if vlr is not None else None
            if vlr is not None and second_region != "vlr":
                self.settings["vlr"].append(second_region)
        self.hits = self.misses = 0
        self._reported = (0, 0)
        self._pending: list[_Pending] = []
        self._hit_masks: dict[int, Tensor] = {}
        self._num_priors = 0
        self._open()

    # ------------------------------------------------------------------------------------ files
    def _open(self) -> None:
        manifest = self.root / MANIFEST
        wanted = json.loads(json.dumps(self.settings, sort_keys=True))
        if not manifest.is_file():
            # Ranks starting together write the same manifest: another rank's (temporary) manifest is
            # no stranger, anything else is.
            ours = (MANIFEST, f".{MANIFEST}.")
            strangers = self.root.exists() and (
                not self.root.is_dir() or any(not p.name.startswith(ours) for p in self.root.iterdir())
            )
            if strangers:
                raise ValueError(
                    f"distill.cache {self.root} exists and is not a locdistill teacher cache "
                    f"(no {MANIFEST}); choose an empty or new folder"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            self._write_atomic(manifest, (json.dumps(wanted, indent=1, sort_keys=True) + "\n").encode())
        found = json.loads(manifest.read_text(encoding="utf-8"))
        differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        if differ:
            key = differ[0]
            raise ValueError(
                f"distill.cache {self.root} holds teacher outputs made with other settings "
                f"({key}: {found.get(key)!r} there vs {wanted.get(key)!r} now); choose another "
                "folder or delete it"
            )
        log.info(
            "teacher cache %s: %s logits at %s anchors%s",
            self.root,
            self.settings["dtype"],
            self.anchors,
            " (+ CrossKD hold statistics)" if self.settings.get("hold_depth") is not None else "",
        )

    def path(self, key: str) -> Path:
        """The file of one key (two-level fan-out by its sha1)."""
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.pt"

    @staticmethod
    def _tmp_name(path: Path) -> Path:
        """A temporary name no other process (rank, node) writes: renamed into place when complete."""
        return path.with_name(f".{path.name}.{socket.gethostname()}.{get_rank()}.{os.getpid()}.tmp")

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = self._tmp_name(path)
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def _save(self, key: str, entry: dict[str, Tensor]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_name(path)
        torch.save(entry, tmp)
        os.replace(tmp, path)

    def _load(self, key: str) -> dict[str, Tensor] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a file damaged outside our atomic writes: recompute it
            log.warning("teacher cache entry %s unreadable (%s); running the teacher instead", path, e)
            return None
        return entry if entry.get("key") == key else None

    # ------------------------------------------------------------------------------------ lookup
    def fetch(
        self,
        batch: Batch,
        compute: Callable[[Tensor], TeacherResult],
        with_hold: bool,
    ) -> TeacherResult:
        """The teacher's outputs for ``batch``: read where cached, computed (and stored) where not.

        Args:
            batch: the training batch (its metas make the keys; the key fixes the level sizes).
            compute: runs the teacher on a sub-batch of ``batch.images``.
            with_hold: CrossKD needs the hold statistics (an entry without them is a miss).
        """
        batch_hw = (int(batch.images.shape[-2]), int(batch.images.shape[-1]))
        keys = [cache_key(m, batch_hw) for m in batch.metas]
        entries = [self._load(k) for k in keys]
        if with_hold:
            entries = [e if e is not None and "hold" in e else None for e in entries]
        miss = [i for i, e in enumerate(entries) if e is None]
        self.hits += len(keys) - len(miss)
        self.misses += len(miss)
        self._pending, self._hit_masks = [], {}
        fresh = compute(batch.images[miss]) if miss else None
        if fresh is not None:
            num_anchors = int(fresh.outputs.cls.shape[1])
        else:
            num_anchors = _num_priors(next(e for e in entries if e is not None))
        self._num_priors = num_anchors
        device = batch.images.device
        cls_rows: list[Tensor | None] = [None] * len(keys)
        reg_rows: list[Tensor | None] = [None] * len(keys)
        holds: list[Tensor | None] = [None] * len(keys)
        for i, e in enumerate(entries):
            if e is None:
                continue
            cls, reg = e["cls"].float(), e["reg"].float()
            if "index" in e:  # needed anchors only: zeros elsewhere (never read there)
                index = e["index"].long()
                mask = torch.zeros(num_anchors, dtype=torch.bool)
                mask[index] = True
                self._hit_masks[i] = mask
                cls = torch.zeros(num_anchors, cls.shape[1]).index_copy_(0, index, cls)
                reg = torch.zeros(num_anchors, reg.shape[1]).index_copy_(0, index, reg)
            cls_rows[i], reg_rows[i] = cls.to(device), reg.to(device)
            holds[i] = e["hold"].to(device) if "hold" in e else None
        if fresh is not None:
            f_cls, f_reg = fresh.outputs
            for j, i in enumerate(miss):
                cls_rows[i], reg_rows[i] = f_cls[j], f_reg[j]
                hold = torch.stack([s[j] for s in fresh.hold_sums]) if fresh.hold_sums is not None else None
                holds[i] = hold
                self._pending.append(_Pending(i, keys[i], f_cls[j], f_reg[j], hold))
            if self.anchors == "all":
                self._write_pending(None)
        cls_flat = torch.stack([c for c in cls_rows if c is not None])
        reg_flat = torch.stack([r for r in reg_rows if r is not None])
        outputs = FlatOutputs(cls_flat, reg_flat)
        hold_sums = None
        if with_hold:
            per_image = torch.stack([h for h in holds if h is not None])  # [B, L, 2, 2, F]
            hold_sums = list(per_image.unbind(dim=1))
        return TeacherResult(outputs, hold_sums)

    def needed_anchors(self, assignment: Assignment, gts: list[Targets]) -> Tensor:
        """``[B, A]`` bool: the positives, and the second LD region's priors when VLR LD is on."""
        needed = assignment.pos_mask.clone()
        if self.vlr is not None:
            needed |= second_region(self.second_region, assignment, gts, self.vlr[0], self.vlr[1]) > 0
        return needed

    def after_assignment(self, assignment: Assignment, gts: list[Targets]) -> None:
        """With ``needed`` anchors: store this step's misses at their needed anchors, and check that
        the entries read cover every anchor this step reads (they must, for the same image and GT)."""
        if self.anchors != "needed" or not (self._pending or self._hit_masks):
            return
        needed = self.needed_anchors(assignment, gts).cpu()
        for i, mask in self._hit_masks.items():
            if bool((needed[i] & ~mask).any()):
                raise ValueError(
                    f"distill.cache {self.root}: a cached entry lacks anchors this step needs (the data or "
                    "the assignment changed since it was written); delete the folder"
                )
        self._write_pending(needed)

    def _write_pending(self, needed: Tensor | None) -> None:
        for p in self._pending:
            entry: dict[str, Any] = {"key": p.key}
            cls, reg = p.cls.detach().cpu(), p.reg.detach().cpu()
            if needed is not None:
                index = needed[p.batch_index].nonzero().flatten()
                cls, reg = cls[index], reg[index]
                entry["index"] = index.to(torch.int32)
            entry["cls"], entry["reg"] = cls.to(self.dtype), reg.to(self.dtype)
            if p.hold is not None:
                entry["hold"] = p.hold.detach().cpu().double()
            entry["num_priors"] = torch.tensor(self._num_priors, dtype=torch.int64)
            self._save(p.key, entry)
        self._pending = []

    # ------------------------------------------------------------------------------------ stats
    def take_stats(self) -> dict[str, float]:
        """Hits and misses (images) since the last call, summed over ranks; and the hit rate."""
        counts = torch.tensor(
            [self.hits - self._reported[0], self.misses - self._reported[1]], dtype=torch.float64
        )
        self._reported = (self.hits, self.misses)
        if is_distributed() and get_world_size() > 1:
            import torch.distributed as dist

            if dist.get_backend() == "nccl":
                counts = counts.cuda()
            dist.all_reduce(counts)
        hits, misses = (float(v) for v in counts.cpu().tolist())
        return {"cache_hits": hits, "cache_misses": misses, "cache_hit_rate": hits / max(hits + misses, 1)}


def build_teacher_cache(
    cfg: Config, student: DenseDetector[Any], teacher: DenseDetector[Any]
) -> TeacherCache | None:
    """The ``distill.cache`` of a config (``None`` when unset); its settings name everything the
    teacher's outputs depend on besides the per-image key."""
    d = cfg.distill
    if d is None or not d.cache:
        return None
    if d.cache_anchors == "needed" and d.crosskd.enabled:
        raise ValueError(
            "distill.cache_anchors=needed cannot serve CrossKD, which reads the teacher at every anchor; "
            "set distill.cache_anchors=all"
        )
    train_data = cfg.data.train
    settings = {
        "teacher": fingerprint(teacher),
        "teacher_mean_std": [list(teacher.mean), list(teacher.std)],
        "input_mean_std": [list(student.mean), list(student.std)],
        "data": {
            "format": train_data.format,
            "root": str(Path(train_data.root).resolve()),
            "ann_file": train_data.ann_file,
            "img_dir": train_data.img_dir,
            "classes": list(train_data.classes),
            "num_images": train_data.num_images,
            "image_size": train_data.image_size,
            "seed": train_data.seed,
            "size_divisor": cfg.data.size_divisor,
        },
        "hold_depth": teacher_depth(d.crosskd) if d.crosskd.enabled else None,
        "hold": d.crosskd.hold if d.crosskd.enabled else None,
    }
    vlr = (d.vlr_ld.alpha_low, d.vlr_ld.diou) if d.vlr_ld.enabled else None
    return TeacherCache(d.cache, settings, d.cache_dtype, d.cache_anchors, vlr, student.ld_spec.second_region)

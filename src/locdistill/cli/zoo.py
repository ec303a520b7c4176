"""``locdistill zoo``: the released mmdetection GFL / LD checkpoints that ``zoo:NAME`` loads.

::

    locdistill zoo                      # the table: name, kind, box AP, config, teacher/student, cached
    locdistill zoo NAME                 # one entry: URL, hash, local file, the LD configs it teaches
    locdistill zoo download NAME ...    # fetch into the torch hub cache now (hash checked)
    locdistill zoo --json               # the table as JSON
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locdistill.zoo import ZooEntry

ZOO_HELP = "list the released GFL and LD checkpoints that zoo:NAME loads, or download them"
ZOO_EPILOG = (
    "examples:\n"
    "  locdistill zoo\n"
    "  locdistill zoo gfl_r101_fpn_ms-2x_coco\n"
    "  locdistill zoo download gfl_r101_fpn_ms-2x_coco\n"
    "  locdistill test zoo:ld_r18-gflv1-r101_fpn_1x_coco --data-root /data/coco   # its config: the zoo's\n"
    "  locdistill train configs/ld/ld_gflv1_r101_r18_fpn_coco_1x.yaml "
    "--set distill.teacher_checkpoint=zoo:gfl_r101_fpn_ms-2x_coco\n\n"
    "zoo:NAME works wherever a checkpoint path does (test, predict, export, benchmark, analyze,\n"
    "convert, distill.teacher_checkpoint, Detector.from_checkpoint). The file is downloaded once into\n"
    "torch.hub.get_dir()/checkpoints ($TORCH_HOME/hub/checkpoints) and its sha256 checked; offline, put\n"
    "a file downloaded by hand there. LOCDISTILL_ZOO_URL=<base> fetches <base>/<file name> instead."
)


def add_zoo_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = "locdistill zoo [download] [NAME ...] [--json]"
    p.add_argument(
        "names",
        nargs="*",
        metavar="[download] NAME",
        help="show these entries (zoo:NAME or NAME); after 'download', fetch them into the cache",
    )
    p.add_argument("--json", action="store_true", help="print the entries as JSON")


def cmd_zoo(args: argparse.Namespace) -> int:
    from locdistill.zoo import fetch, zoo_entries, zoo_entry

    names = list(args.names)
    download = bool(names) and names[0] == "download"
    if download:
        names = names[1:]
        if not names:
            raise ValueError("zoo download needs the names of the checkpoints to fetch ('locdistill zoo')")
    entries = [zoo_entry(n) for n in names] if names else list(zoo_entries())
    if download:
        for entry in entries:
            print(f"zoo:{entry.name}: {fetch(entry)}")
        return 0
    if args.json:
        print(json.dumps([_as_dict(e) for e in entries], indent=2))
    elif names:
        print("\n\n".join(_details(e) for e in entries))
    else:
        print(_table(entries))
    return 0


def _as_dict(entry: ZooEntry) -> dict[str, Any]:
    from dataclasses import asdict

    from locdistill.zoo import cache_path, entry_url

    path = cache_path(entry)
    out = asdict(entry)
    out.update(teacher_of=list(entry.teacher_of), download_url=entry_url(entry))
    out.update(local_file=str(path), cached=path.is_file())
    return out


def _role(entry: ZooEntry) -> str:
    if entry.teacher:
        return f"student of {entry.teacher}"
    if entry.teacher_of:
        return f"teacher of {len(entry.teacher_of)} LD config(s)"
    return ""


def _table(entries: list[ZooEntry]) -> str:
    from locdistill.zoo import cache_path

    rows = [("NAME", "KIND", "BOX AP", "LOADS INTO", "CACHED", "ROLE")]
    for e in entries:
        cached = "yes" if cache_path(e).is_file() else "-"
        rows.append((e.name, e.kind, f"{e.box_ap:.1f}", e.config, cached, _role(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in rows
    ]
    folder = cache_path(entries[0]).parent if entries else "the torch hub cache"
    lines += [
        "",
        "box AP: COCO val2017 as mmdetection reports it. Use zoo:NAME wherever a checkpoint path goes,",
        "e.g. 'locdistill test zoo:NAME --data-root /data/coco' or "
        "'--set distill.teacher_checkpoint=zoo:NAME';",
        f"files are downloaded once into {folder} ('locdistill zoo NAME' for details).",
    ]
    return "\n".join(lines)


def _details(entry: ZooEntry) -> str:
    from locdistill.zoo import cache_path, entry_url

    path = cache_path(entry)
    fields = [
        ("kind", "LD student" if entry.kind == "ld" else "GFL detector"),
        ("box AP", f"{entry.box_ap:.1f} (COCO val2017, mmdetection)"),
        ("config", f"{entry.config} (mmdetection: {entry.mmdet_config})"),
        ("url", entry_url(entry)),
        ("sha256", f"{entry.sha256_prefix}..."),
        ("local file", f"{path} ({'cached' if path.is_file() else 'not downloaded yet'})"),
    ]
    if entry.teacher:
        fields.append(("teacher", f"zoo:{entry.teacher}"))
    fields += [("teacher of" if i == 0 else "", c) for i, c in enumerate(entry.teacher_of)]
    width = max(len(k) for k, _ in fields)
    return "\n".join([f"zoo:{entry.name}", *(f"  {k.ljust(width)}  {v}" for k, v in fields)])

"""The dense-detector contract: what every detector family exposes, and all that ``distill/`` uses.

A *family* (GFL, and e.g. RetinaGFL, ATSS-GFL, FCOS-GFL, a YOLO-style DFL head) is one subclass of
:class:`DenseDetector`. The Distiller (LD: Main LD, the second LD region, Main KD), CrossKD and the
teacher-output cache read a detector only through the members below; they import no head and no
detector class. Adding a family means adding its head, priors, assigner, objective and detector class
under ``models/`` and one branch in :func:`locdistill.models.build.build_detector`; nothing in
``distill/``.

Per-prior rows. Every tensor the contract hands to ``distill/`` has one row per *prior* (an anchor, or
a point for anchor-free heads), in one fixed order shared by :meth:`DenseDetector.flatten`, the
:class:`~locdistill.models.assigners.assignment.Assignment` and the priors: levels from stride 8
upward, row-major over each level's cells (``index = (y*W_l + x)*P + p`` with ``P`` priors per
location), and with several anchors per location each anchor its own row (anchor-major channels,
:func:`~locdistill.models.heads.outputs.flatten_levels` with ``priors_per_location``). ``A`` below is
the number of priors of all levels of the batch's feature maps, ``C`` the classes, ``R`` = ``reg_max``.

What a family provides (see :class:`DenseDetector` for the signatures):

* ``family``: its name, e.g. ``"GFL"``; a teacher of another family is refused in one line naming both
  (:func:`check_same_family`).
* ``forward(images) -> outputs``: raw outputs of the family's own type (with ``.float()`` and
  ``.clone()``); ``flatten(outputs) -> FlatOutputs``: ``cls [B, A, C]`` class logits (pre-sigmoid) and
  ``reg [B, A, 4*(R+1)]`` edge-distribution logits (side-major: left, top, right, bottom; after the
  level's learnable scale where the head has one).
* ``assign(outputs, targets, metas) -> Assignment``: the priors (as boxes: ``anchors [A, 4]``; point
  priors as zero-size boxes ``(x, y, x, y)`` at the point the distances are measured from), their
  strides and levels, which are valid per image, labels, label weights, assigned GT boxes, the
  positives (``gt_index >= 0``), the class-loss normaliser; ``per_image`` results with the prior-to-GT
  IoUs and each GT's ATSS-style threshold where the second LD region is a VLR.
* ``positive_samples(outputs, assignment) -> Positives``: what the family's losses and LD share at the
  positives (computed once per step by the Distiller and passed back to ``loss``).
* ``loss(outputs, targets, metas, assignment=None, positives=None) -> dict`` and ``predict``.
* ``ld_spec``: :class:`LDSpec`, how LD reads this family (row form, second region, its weights).
* ``prior_layout()``: what must match between a teacher and a student for their priors to correspond
  one to one (strides, anchor sizes, ...), each with the words an error message uses.
* ``features(images)``: the FPN maps; ``crosskd_head()``: the head as a :class:`TowerHead` when it can
  be split at a tower depth (CrossKD), else ``None`` (CrossKD is then refused with a clear message).
* ``num_classes``, ``reg_max``, ``num_levels``, ``strides``, ``mean``/``std`` (the input normalisation
  the backbone expects), ``integral`` (edge distributions -> distances, in strides).

The numbers of LD (weights, temperatures, the second region's factor and divisor, the class-KD
temperature) are config (``distill.*``), set per family by its configs; the spec says only *what* is
computed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, NamedTuple, Protocol, TypeVar

from torch import Tensor, nn

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.heads.outputs import TowerFeatures
from locdistill.models.integral import Integral
from locdistill.structures import Detections, ImageMeta, Targets


class FlatOutputs(NamedTuple):
    """A detector's raw outputs with one row per prior (see the module docstring for the order).

    Attributes:
        cls: ``[B, A, C]`` class logits, pre-sigmoid (GFL v2: the logit of the joint score).
        reg: ``[B, A, 4*(R+1)]`` edge-distribution logits, side-major
            (``column = side*(R+1) + bin``), after the level's scale where the head has one.
    """

    cls: Tensor
    reg: Tensor

    def float(self) -> FlatOutputs:
        """Both in float32 (float32 tensors as they are, not copied)."""
        return FlatOutputs(self.cls.float(), self.reg.float())

    def clone(self) -> FlatOutputs:
        """Copies (e.g. of tensors made under ``torch.inference_mode``, to use them in autograd)."""
        return FlatOutputs(self.cls.clone(), self.reg.clone())


LDRow = Literal["edge", "prior"]
"""How LD forms its softmax rows: ``edge``, four ``(R+1)``-way rows per prior (GFL, ATSS-GFL, FCOS-GFL,
GFL v2); ``prior``, one ``4*(R+1)``-way row per prior (RetinaGFL's ``LDRetinaHead``). Either way the
weighted sum of the row-mean KLs is divided by 4."""

SecondRegion = Literal["vlr", "vlr_negatives", "inside_gt_negatives"]
"""Where the second LD term distils (``distill.vlr_ld``): ``vlr``, the Valuable Localization Region,
positives kept (GFL, ATSS-GFL); ``vlr_negatives``, the VLR without the positives (RetinaGFL);
``inside_gt_negatives``, valid non-positive priors whose point lies strictly inside a GT box
(FCOS-GFL; needs no prior boxes)."""

SecondWeight = Literal["iou", "student_score"]
"""The per-prior weight of the second LD term: ``iou``, the VLR's IoU with its GT; ``student_score``,
the student's max class sigmoid there, detached (FCOS-GFL)."""


@dataclass(frozen=True)
class LDSpec:
    """How LD reads a family's outputs (what is computed; the numbers are ``distill.*`` config).

    The main region is always the assignment's positives, weighted by the student's max class sigmoid
    (detached); Main KD is always the class logits' KD at the positives, per level divided by that
    level's positive count.
    """

    row: LDRow = "edge"
    second_region: SecondRegion = "vlr"
    second_weight: SecondWeight = "iou"


class Positives(Protocol):
    """What LD reads at the positives of an assignment (a family's ``positive_samples`` result has at
    least these; ``P`` positives of the batch, in ``assignment.pos_mask.nonzero()`` order).

    Attributes:
        batch_index, anchor_index: ``[P]`` int64, where the positives are (image, prior).
        level: ``[P]`` int64 level of each positive.
        weights: ``[P]`` LD weights: the student's max class sigmoid at each positive, detached.
        pred_logits: ``[P, 4, R+1]`` the student's edge-distribution logits there (float32).
    """

    batch_index: Tensor
    anchor_index: Tensor
    level: Tensor
    weights: Tensor
    pred_logits: Tensor


class TowerHead(Protocol):
    """A head that CrossKD can split at a tower depth (two towers of ``stacked_convs`` convs each).

    ``forward_from(forward_tower(feats, k, r))`` must equal the head's own forward for every
    ``k in 0..stacked_convs`` and either ``r``; ``forward_from`` applies the ReLU of conv ``k - 1`` first
    when ``k > 0`` (a no-op on rectified features).

    Attributes:
        in_channels: width of the FPN maps (the tower input, depth 0).
        feat_channels: width of the towers (depth > 0).
    """

    in_channels: int
    feat_channels: int

    @property
    def stacked_convs(self) -> int: ...

    def forward_tower(self, feats: list[Tensor], depth: int, relu_last: bool = True) -> TowerFeatures: ...

    def forward_from(self, tower: TowerFeatures) -> Any: ...


OutputsT = TypeVar("OutputsT")


class DenseDetector(nn.Module, ABC, Generic[OutputsT]):
    """A dense one-stage detector family: backbone -> FPN -> head with edge-distribution regression.

    Subclasses set ``family`` (and ``ld_spec`` when LD reads them differently from GFL), keep
    ``strides`` and ``integral``, and implement the abstract members. ``OutputsT`` is the family's raw
    output type (returned by ``forward``; it has ``.float()`` and ``.clone()``).
    """

    family: ClassVar[str]
    ld_spec: ClassVar[LDSpec] = LDSpec()
    strides: list[int]
    integral: Integral

    @property
    @abstractmethod
    def num_classes(self) -> int: ...

    @property
    @abstractmethod
    def reg_max(self) -> int: ...

    @property
    @abstractmethod
    def num_levels(self) -> int: ...

    @property
    @abstractmethod
    def mean(self) -> tuple[float, float, float]: ...

    @property
    @abstractmethod
    def std(self) -> tuple[float, float, float]: ...

    @abstractmethod
    def forward(self, images: Tensor) -> OutputsT:
        """``[B, 3, H, W]`` normalised images -> raw outputs (no decoding, no loss)."""

    @abstractmethod
    def features(self, images: Tensor) -> list[Tensor]:
        """The FPN maps ``[B, F, H_l, W_l]`` (what the head reads)."""

    @abstractmethod
    def flatten(self, outputs: OutputsT) -> FlatOutputs:
        """Raw outputs -> :class:`FlatOutputs`, one row per prior (no dtype change)."""

    @abstractmethod
    def prior_layout(self) -> list[tuple[str, object]]:
        """``(what, value)`` pairs that must be equal for two detectors' priors to correspond one to one;
        ``what`` is how an error names it, e.g. ``("strides", [8, 16, 32, 64, 128])``."""

    @abstractmethod
    def assign(self, outputs: OutputsT, targets: list[Targets], metas: list[ImageMeta]) -> Assignment:
        """The family's assignment of every prior of the batch to the ground truth (targets checked)."""

    @abstractmethod
    def positive_samples(self, outputs: OutputsT, assignment: Assignment) -> Positives:
        """What the losses and LD need at the positives of ``assignment`` (float32)."""

    @abstractmethod
    def loss(
        self,
        outputs: OutputsT,
        targets: list[Targets],
        metas: list[ImageMeta],
        assignment: Assignment | None = None,
        positives: Any = None,
    ) -> dict[str, Tensor]:
        """The family's training losses (``loss_*`` scalars); ``assignment`` and ``positives`` (from
        :meth:`positive_samples`) are computed here unless given."""

    @abstractmethod
    def predict(self, outputs: OutputsT, metas: list[ImageMeta], rescale: bool = True) -> list[Detections]:
        """Detections per image; with ``rescale`` in original-image pixels."""

    def crosskd_head(self) -> TowerHead | None:
        """The head as a :class:`TowerHead` when CrossKD can cross into it, else ``None`` (default)."""
        return None


def article(name: str) -> str:
    """``a`` or ``an`` before a family name read letter by letter or as a word (``an ATSS-GFL``,
    ``an FCOS-GFL``, ``a GFL``, ``a RetinaGFL``)."""
    return "an" if name[:1] in "AEFHILMNORSX" and not name[:2].istitle() else "a"


def check_same_family(student: DenseDetector[Any], teacher: DenseDetector[Any]) -> None:
    """Raise ``ValueError`` (one line naming both) when the teacher is of another family than the
    student: their outputs then mean different things at the same prior (anchor sizes, centres,
    assignment), even where the shapes happen to agree."""
    if student.family != teacher.family:
        raise ValueError(
            f"distill: the teacher is {article(teacher.family)} {teacher.family} detector but the student "
            f"is {article(student.family)} {student.family} detector; LD needs a teacher of the student's "
            "family"
        )

"""Tests of class-aware NMS and Score-voting Cluster-DIoU-NMS against plain loop implementations."""

from __future__ import annotations

import math

import pytest
import torch

from locdistill.models.cluster_nms import score_voting_cluster_diou_nms
from locdistill.models.nms import batched_nms, multiclass_nms
from locdistill.ops.diou import diou_matrix

# --------------------------------------------------------------------------------------------------
# Obviously-correct loop implementations (float64 Python numbers, no tensors in the algorithm)
# --------------------------------------------------------------------------------------------------


def loop_iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def loop_diou(a: list[float], b: list[float], beta: float = 0.8) -> float:
    """IoU - (rho^2 / (c^2 + 1e-7)) ** beta, written out."""
    rho2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    return loop_iou(a, b) - (rho2 / (cw * cw + ch * ch + 1e-7)) ** beta


def loop_voting_cluster_diou_nms(
    boxes: list[list[float]],
    scores: list[float],
    labels: list[int],
    thr: float = 0.6,
    max_per_img: int = 100,
    beta: float = 0.8,
    vote_thr: float = 0.7,
    sigma: float = 0.025,
) -> tuple[list[list[float]], list[float], list[int]]:
    """The LD reference, literally, with loops: class offset, full DIoU matrix, Cluster-NMS rounds
    on its strict upper triangle, voting over triu incl. the diagonal with rows of dropped boxes
    zeroed (including the reference's exp(-1/sigma) floor for non-voting pairs)."""
    n = len(boxes)
    order = sorted(range(n), key=lambda i: -scores[i])  # stable: ties keep input order
    b = [boxes[i] for i in order]
    s = [scores[i] for i in order]
    lab = [labels[i] for i in order]
    offset = max(max(bx) for bx in b) + 1.0
    shifted = [[v + lab[i] * offset for v in b[i]] for i in range(n)]
    m = [[loop_diou(shifted[i], shifted[j], beta) for j in range(n)] for i in range(n)]
    upper = [[m[i][j] if i < j else 0.0 for j in range(n)] for i in range(n)]
    a_mat = upper
    keep = [True] * n
    for _ in range(n):
        col_max = [max(a_mat[i][j] for i in range(n)) for j in range(n)]
        keep = [c <= thr for c in col_max]
        b_mat = [[upper[i][j] if keep[i] else 0.0 for j in range(n)] for i in range(n)]
        if b_mat == a_mat:
            break
        a_mat = b_mat
    voted = []
    for i in range(n):
        num = [0.0] * 4
        den = 0.0
        for j in range(n):
            v = m[i][j] if (i <= j and keep[i]) else 0.0
            v = v if v > vote_thr else 0.0
            w = math.exp(-((1.0 - v) ** 2) / sigma) * s[j]
            den += w
            for k in range(4):
                num[k] += w * b[j][k]
        voted.append([x / den for x in num])
    kept = [i for i in range(n) if keep[i]][:max_per_img]
    return [voted[i] for i in kept], [s[i] for i in kept], [lab[i] for i in kept]


def loop_greedy_nms(
    boxes: list[list[float]], scores: list[float], labels: list[int], thr: float
) -> list[int]:
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        if all(labels[k] != labels[i] or loop_iou(boxes[k], boxes[i]) <= thr for k in kept):
            kept.append(i)
    return kept


def clustered_boxes(
    n: int, num_objects: int, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random boxes jittered around a few objects, mostly of the object's class."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(num_objects, 2, generator=g) * 400
    size = 15 + torch.rand(num_objects, 2, generator=g) * 120
    cls = torch.randint(0, num_classes, (num_objects,), generator=g)
    o = torch.randint(0, num_objects, (n,), generator=g)
    c = centre[o] + torch.randn(n, 2, generator=g) * size[o] * 0.08
    wh = size[o] * torch.exp(torch.randn(n, 2, generator=g) * 0.08)
    boxes = torch.cat([c - wh / 2, c + wh / 2], dim=1)
    other = torch.randint(0, num_classes, (n,), generator=g)
    labels = torch.where(torch.rand(n, generator=g) < 0.85, cls[o], other)
    scores = 0.05 + 0.9 * torch.rand(n, generator=g)
    return boxes, scores, labels


# --------------------------------------------------------------------------------------------------
# Score-voting Cluster-DIoU-NMS
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "n", "num_classes", "thr"),
    [(0, 60, 3, 0.6), (1, 120, 4, 0.6), (2, 160, 5, 0.6), (3, 100, 2, 0.5), (4, 90, 3, 0.75)],
)
def test_voting_cluster_diou_nms_matches_loop_reference(
    seed: int, n: int, num_classes: int, thr: float
) -> None:
    boxes, scores, labels = clustered_boxes(n, num_objects=8, num_classes=num_classes, seed=seed)
    exp_boxes, exp_scores, exp_labels = loop_voting_cluster_diou_nms(
        boxes.double().tolist(), scores.double().tolist(), labels.tolist(), thr=thr, max_per_img=10**6
    )
    out_boxes, out_scores, out_labels = score_voting_cluster_diou_nms(
        boxes, scores, labels, iou_threshold=thr, max_per_img=0
    )
    assert 0 < len(exp_scores) < n  # something was suppressed, something kept
    assert out_labels.tolist() == exp_labels
    assert out_scores.tolist() == pytest.approx(exp_scores, abs=0)  # same boxes, same order
    torch.testing.assert_close(
        out_boxes.double(), torch.tensor(exp_boxes, dtype=torch.float64), rtol=0, atol=2e-4
    )
    # voting moved some boxes (the test would be vacuous otherwise)
    sel = torch.tensor([scores.tolist().index(v) for v in out_scores.tolist()])
    assert (out_boxes - boxes[sel]).abs().max() > 0.1


def test_max_per_img_and_small_pair_chunks_give_the_same_result() -> None:
    boxes, scores, labels = clustered_boxes(200, num_objects=12, num_classes=4, seed=7)
    full = score_voting_cluster_diou_nms(boxes, scores, labels, max_per_img=0)
    top = score_voting_cluster_diou_nms(boxes, scores, labels, max_per_img=5)
    chunked = score_voting_cluster_diou_nms(boxes, scores, labels, max_per_img=0, max_pairs=7)
    for a, b in zip(full, chunked):
        torch.testing.assert_close(a, b)
    for a, b in zip(full, top):
        torch.testing.assert_close(a[:5], b)
    # suppression decided on a short prefix of the score order, grown 4x until enough are kept
    for k, min_prefix in ((5, 2), (17, 8), (40, 3), (500, 1)):
        grown = score_voting_cluster_diou_nms(boxes, scores, labels, max_per_img=k, min_prefix=min_prefix)
        for a, b in zip(full, grown):
            torch.testing.assert_close(a[:k], b)
    assert (full[1][:-1] >= full[1][1:]).all()


def test_prefix_grows_when_the_top_candidates_are_one_cluster() -> None:
    # 120 jittered copies of one object hold the top scores: the first prefix (8 * max_per_img = 40)
    # keeps one box only, so the prefix must grow (40 -> 160 -> all) to find 5 kept boxes.
    g = torch.Generator().manual_seed(3)
    cluster = torch.tensor([100.0, 100.0, 200.0, 180.0]) + torch.randn(120, 4, generator=g)
    others, _, other_labels = clustered_boxes(80, num_objects=10, num_classes=1, seed=9)
    boxes = torch.cat([cluster, others + 300.0])
    scores = torch.cat([0.5 + 0.4 * torch.rand(120, generator=g), 0.45 * torch.rand(80, generator=g)])
    labels = torch.cat([torch.zeros(120, dtype=torch.int64), other_labels])
    full = score_voting_cluster_diou_nms(boxes, scores, labels, max_per_img=0)
    assert (full[1] > 0.5).sum() == 1  # the cluster leaves a single box
    grown = score_voting_cluster_diou_nms(boxes, scores, labels, max_per_img=5, min_prefix=1)
    for a, b in zip(full, grown):
        torch.testing.assert_close(a[:5], b)
    # the cluster's kept box was voted on by the whole cluster, found in all 200 candidates
    assert (grown[0][0] - boxes[scores.argmax()]).abs().max() > 0.05


def test_identical_boxes_of_different_classes_are_both_kept() -> None:
    boxes = torch.tensor([[10.0, 10.0, 50.0, 60.0], [10.0, 10.0, 50.0, 60.0], [11.0, 10.0, 50.0, 61.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 1, 0])
    out_boxes, out_scores, out_labels = score_voting_cluster_diou_nms(boxes, scores, labels)
    assert out_labels.tolist() == [0, 1]
    assert out_scores.tolist() == pytest.approx([0.9, 0.8])
    # the class-1 box is alone in its class: no vote moves it
    torch.testing.assert_close(out_boxes[1], boxes[1])


def _hand_diou_ab() -> float:
    # A = [0, 0, 10, 10], B = [0, 0, 10, 11]: IoU = 100 / 110; centres (5, 5) and (5, 5.5), so
    # rho^2 = 0.25; enclosing box [0, 0, 10, 11], c^2 = 10^2 + 11^2 = 221.
    return 100.0 / 110.0 - (0.25 / (221.0 + 1e-7)) ** 0.8


def test_voting_weights_hand_computed() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.int64)
    d = _hand_diou_ab()
    assert d == pytest.approx(0.904697, abs=1e-6)
    w_b = math.exp(-((1.0 - d) ** 2) / 0.025) * 0.8  # B's vote for A; A's own weight is 0.9
    y2 = (0.9 * 10.0 + w_b * 11.0) / (0.9 + w_b)
    out_boxes, out_scores, _ = score_voting_cluster_diou_nms(boxes, scores, labels)
    # B (DIoU 0.905 > 0.6 with A) is suppressed; C does not overlap and keeps its coordinates.
    assert out_scores.tolist() == pytest.approx([0.9, 0.7])
    torch.testing.assert_close(out_boxes[0], torch.tensor([0.0, 0.0, 10.0, y2]), rtol=0, atol=1e-5)
    assert y2 == pytest.approx(10.0 + w_b / (0.9 + w_b))
    torch.testing.assert_close(out_boxes[1], boxes[2])

    # With a threshold above DIoU(A, B) both are kept; only lower-ranked boxes vote, so A moves
    # towards B while B (nothing ranked below it overlaps it) stays where it is.
    out_boxes, out_scores, _ = score_voting_cluster_diou_nms(boxes, scores, labels, iou_threshold=0.95)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    torch.testing.assert_close(out_boxes[0], torch.tensor([0.0, 0.0, 10.0, y2]), rtol=0, atol=1e-5)
    torch.testing.assert_close(out_boxes[1], boxes[1])


def test_cluster_rounds_follow_the_chain() -> None:
    # A suppresses B, B would suppress C, but B is dropped, so C survives (greedy semantics,
    # which Fast-NMS, a single round, would get wrong).
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.5, 0.0, 11.5, 10.0], [3.0, 0.0, 13.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.int64)
    m = diou_matrix(boxes, boxes)
    assert m[0, 1] > 0.6 and m[1, 2] > 0.6 and m[0, 2] <= 0.6
    _, out_scores, _ = score_voting_cluster_diou_nms(boxes, scores, labels)
    assert out_scores.tolist() == pytest.approx([0.9, 0.7])


def test_long_suppression_chain_matches_loop() -> None:
    # Boxes sliding by 0.6 px: every box overlaps its neighbours above the threshold, so the keep
    # decision of each box depends on the one before it: many Cluster-NMS rounds.
    n = 70
    x = torch.arange(n, dtype=torch.float32) * 0.6
    boxes = torch.stack([x, torch.zeros(n), x + 10.0, torch.full((n,), 10.0)], dim=1)
    scores = torch.linspace(0.9, 0.1, n)
    labels = torch.zeros(n, dtype=torch.int64)
    exp_boxes, exp_scores, _ = loop_voting_cluster_diou_nms(
        boxes.double().tolist(), scores.double().tolist(), labels.tolist(), max_per_img=10**6
    )
    out_boxes, out_scores, _ = score_voting_cluster_diou_nms(boxes, scores, labels, max_per_img=0)
    assert 5 < len(exp_scores) < n // 2
    assert out_scores.double().tolist() == pytest.approx(exp_scores, abs=1e-7)
    torch.testing.assert_close(
        out_boxes.double(), torch.tensor(exp_boxes, dtype=torch.float64), rtol=0, atol=2e-4
    )


def test_diou_matrix_matches_loop() -> None:
    boxes, _, _ = clustered_boxes(30, num_objects=4, num_classes=1, seed=3)
    m = diou_matrix(boxes.double(), boxes.double())
    ref = [[loop_diou(a, b) for b in boxes.double().tolist()] for a in boxes.double().tolist()]
    torch.testing.assert_close(m, torch.tensor(ref, dtype=torch.float64))


def test_empty_and_single_inputs() -> None:
    empty = score_voting_cluster_diou_nms(
        torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    )
    assert [tuple(t.shape) for t in empty] == [(0, 4), (0,), (0,)]
    one = score_voting_cluster_diou_nms(
        torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.5]), torch.tensor([3])
    )
    torch.testing.assert_close(one[0], torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert (
        batched_nms(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.6).numel() == 0
    )
    for kind in ("nms", "voting_cluster_diou"):
        out = multiclass_nms(
            torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), kind, 0.6, 100
        )
        assert out[0].shape == (0, 4)


def test_negative_threshold_rejected() -> None:
    with pytest.raises(ValueError, match="iou_threshold"):
        score_voting_cluster_diou_nms(
            torch.zeros((1, 4)), torch.zeros(1), torch.zeros(1, dtype=torch.int64), -0.1
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    boxes, scores, labels = clustered_boxes(3000, num_objects=60, num_classes=10, seed=11)
    cpu = score_voting_cluster_diou_nms(boxes, scores, labels)
    gpu = score_voting_cluster_diou_nms(boxes.cuda(), scores.cuda(), labels.cuda())
    assert gpu[0].is_cuda
    assert torch.equal(cpu[2], gpu[2].cpu()) and torch.equal(cpu[1], gpu[1].cpu())
    torch.testing.assert_close(cpu[0], gpu[0].cpu(), rtol=0, atol=1e-3)
    keep_cpu = batched_nms(boxes, scores, labels, 0.6)
    keep_gpu = batched_nms(boxes.cuda(), scores.cuda(), labels.cuda(), 0.6)
    assert torch.equal(keep_cpu, keep_gpu.cpu())


# --------------------------------------------------------------------------------------------------
# Plain class-aware NMS and the dispatch
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_nms_matches_greedy_loop(seed: int) -> None:
    boxes, scores, labels = clustered_boxes(150, num_objects=10, num_classes=3, seed=seed)
    keep = batched_nms(boxes, scores, labels, 0.6)
    expected = loop_greedy_nms(boxes.double().tolist(), scores.tolist(), labels.tolist(), 0.6)
    assert keep.tolist() == expected


def test_batched_nms_strict_threshold_and_classes() -> None:
    # IoU exactly 0.5 (50 / 100): not suppressed at threshold 0.5 (strict '>'), suppressed at 0.49.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1, 2]
    assert batched_nms(boxes, scores, labels, 0.49).tolist() == [0, 2]


def test_multiclass_nms_dispatch() -> None:
    boxes, scores, labels = clustered_boxes(100, num_objects=6, num_classes=3, seed=5)
    b, s, lab = multiclass_nms(boxes, scores, labels, "nms", 0.6, 10)
    keep = batched_nms(boxes, scores, labels, 0.6)[:10]
    assert torch.equal(b, boxes[keep]) and torch.equal(s, scores[keep]) and torch.equal(lab, labels[keep])
    v = multiclass_nms(boxes, scores, labels, "voting_cluster_diou", 0.6, 10)
    ref = score_voting_cluster_diou_nms(boxes, scores, labels, 0.6, 10)
    for x, y in zip(v, ref):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="unknown NMS type"):
        multiclass_nms(boxes, scores, labels, "soft_nms", 0.6, 10)

"""The GFL head (v1, and v2 with DGQP): layers and forward only (assignment, losses and decoding live
elsewhere)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from locdistill.models.heads.outputs import HeadOutputs, TowerFeatures
from locdistill.models.layers import ConvNorm, Scale


class DGQP(nn.Module):
    """Distribution-Guided Quality Predictor (GFL v2).

    Per side: the top-``k`` bin probabilities and their mean (``4*(k+1)`` numbers, side-major) ->
    1x1 conv to ``channels`` -> ReLU -> 1x1 conv to 1 -> (sigmoid outside) = quality.
    """

    def __init__(self, reg_max: int = 16, topk: int = 4, channels: int = 64) -> None:
        super().__init__()
        self.reg_max, self.topk = reg_max, topk
        self.reg_conf = nn.Sequential(
            nn.Conv2d(4 * (topk + 1), channels, 1), nn.ReLU(inplace=True), nn.Conv2d(channels, 1, 1)
        )

    def forward(self, bbox_pred: Tensor) -> Tensor:
        """``[B, 4*(R+1), H, W]`` distribution logits -> ``[B, 1, H, W]`` quality logit (pre-sigmoid)."""
        b, _, h, w = bbox_pred.shape
        prob = F.softmax(bbox_pred.reshape(b, 4, self.reg_max + 1, h, w), dim=2)
        top, _ = prob.topk(self.topk, dim=2)
        stat = torch.cat([top, top.mean(dim=2, keepdim=True)], dim=2)
        return self.reg_conf(stat.reshape(b, 4 * (self.topk + 1), h, w))


def joint_logit(cls_logit: Tensor, quality_logit: Tensor) -> Tensor:
    """Logit of ``sigmoid(cls) * sigmoid(quality)``, computed in log space (stable at both ends)."""
    log_p = (F.logsigmoid(cls_logit) + F.logsigmoid(quality_logit)).clamp(max=-1e-7)
    return log_p - torch.log(-torch.expm1(log_p))


class GFLHead(nn.Module):
    """Two towers of ``stacked_convs`` x [3x3 conv (no bias) -> GroupNorm -> ReLU], a 3x3 conv to class
    logits and a 3x3 conv to ``4*(reg_max+1)`` distribution logits times a per-level :class:`Scale`.

    Parameter names follow mmdetection's ``GFLHead`` (``cls_convs.i.conv``, ``cls_convs.i.gn``,
    ``gfl_cls``, ``gfl_reg``, ``scales.l.scale``).

    Args:
        num_classes: foreground classes (sigmoid, no background channel).
        in_channels: channels of each FPN level.
        feat_channels: tower width.
        stacked_convs: convs per tower.
        num_levels: FPN levels (one Scale each).
        reg_max: the distribution has ``reg_max + 1`` bins per side.
        norm_groups: GroupNorm groups.
        dgqp: add the GFL v2 quality branch.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        num_levels: int = 5,
        reg_max: int = 16,
        norm_groups: int = 32,
        dgqp: bool = False,
        dgqp_topk: int = 4,
        dgqp_channels: int = 64,
    ) -> None:
        super().__init__()
        self.num_classes, self.reg_max = num_classes, reg_max
        self.in_channels, self.feat_channels = in_channels, feat_channels
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for i in range(stacked_convs):
            chn = in_channels if i == 0 else feat_channels
            self.cls_convs.append(ConvNorm(chn, feat_channels, 3, norm_groups=norm_groups))
            self.reg_convs.append(ConvNorm(chn, feat_channels, 3, norm_groups=norm_groups))
        last = feat_channels if stacked_convs > 0 else in_channels
        self.gfl_cls = nn.Conv2d(last, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(last, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(num_levels)])
        self.dgqp = DGQP(reg_max, dgqp_topk, dgqp_channels) if dgqp else None
        self.init_weights()

    def init_weights(self) -> None:
        """Convs N(0, 0.01) with zero bias; class bias ``-log((1 - 0.01) / 0.01)`` (prior 0.01)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        assert self.gfl_cls.bias is not None
        nn.init.constant_(self.gfl_cls.bias, -math.log((1 - 0.01) / 0.01))

    def forward_single(self, x: Tensor, scale: nn.Module) -> tuple[Tensor, Tensor]:
        """One level: ``[B, in, H, W]`` -> (``[B, C, H, W]``, ``[B, 4*(R+1), H, W]``)."""
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        cls_score = self.gfl_cls(cls_feat)
        bbox_pred = scale(self.gfl_reg(reg_feat))
        if self.dgqp is not None:
            cls_score = joint_logit(cls_score, self.dgqp(bbox_pred))
        return cls_score, bbox_pred

    def forward(self, feats: list[Tensor]) -> HeadOutputs:
        """FPN maps ``[B, in, H_l, W_l]`` (stride 8 upward) -> :class:`HeadOutputs`."""
        cls_scores, bbox_preds = [], []
        for x, scale in zip(feats, self.scales):
            c, r = self.forward_single(x, scale)
            cls_scores.append(c)
            bbox_preds.append(r)
        return HeadOutputs(cls_scores, bbox_preds)

    @property
    def stacked_convs(self) -> int:
        return len(self.cls_convs)

    def forward_tower(self, feats: list[Tensor], depth: int, relu_last: bool = True) -> TowerFeatures:
        """The first ``depth`` convs of both towers at every level (conv -> GN -> ReLU each).

        ``relu_last=False`` leaves out the ReLU of the last of those convs (its normalised conv output);
        CrossKD as published crosses after that ReLU (``relu_last=True``: the authors keep a reference to
        mmcv ``ConvModule``'s conv -> GN output, which its in-place ReLU then rectifies).
        ``forward_from(forward_tower(feats, k, r))`` equals ``forward(feats)`` for every ``k`` in
        ``0..stacked_convs`` and either ``r``; CrossKD feeds the student's :class:`TowerFeatures` to the
        teacher's :meth:`forward_from` instead.
        """
        if not 0 <= depth <= self.stacked_convs:
            raise ValueError(f"tower depth {depth} is outside 0..{self.stacked_convs} (the head's convs)")
        cls_feats, reg_feats = [], []
        for x in feats:
            c, r = x, x
            for i in range(depth):
                activate = relu_last or i + 1 < depth
                c = self.cls_convs[i](c, activate=activate)
                r = self.reg_convs[i](r, activate=activate)
            cls_feats.append(c)
            reg_feats.append(r)
        return TowerFeatures(cls_feats, reg_feats, depth)

    def forward_from(self, tower: TowerFeatures) -> HeadOutputs:
        """Finish the head from :class:`TowerFeatures` of depth ``k``: ReLU (when ``k > 0``; a no-op on
        features already rectified), tower convs ``k..stacked_convs-1``, the output convs, each level's
        :class:`Scale` and (v2) the DGQP."""
        k = tower.depth
        if not 0 <= k <= self.stacked_convs:
            raise ValueError(f"tower depth {k} is outside 0..{self.stacked_convs} (the head's convs)")
        cls_scores, bbox_preds = [], []
        for c, r, scale in zip(tower.cls_feats, tower.reg_feats, self.scales):
            if k > 0:
                c, r = torch.relu(c), torch.relu(r)
            for i in range(k, self.stacked_convs):
                c = self.cls_convs[i](c)
                r = self.reg_convs[i](r)
            cls_score = self.gfl_cls(c)
            bbox_pred = scale(self.gfl_reg(r))
            if self.dgqp is not None:
                cls_score = joint_logit(cls_score, self.dgqp(bbox_pred))
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
        return HeadOutputs(cls_scores, bbox_preds)

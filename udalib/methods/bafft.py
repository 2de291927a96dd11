"""BAFFT: category- and instance-level alignment to source feature banks, on top of output-space adversarial
training (Yuan, Zhao, Shao, Yuan, Wang, "Birds of a Feather Flock Together", IEEE TIP 31, 2022; its code is a fork
of SIM, Wang et al., CVPR 2020). Code: ``train_step1.py``, ``train_step2.py``. Chapter: ``notebooks/bafft.ipynb``.

Per iteration (``train_step*.py``): source cross-entropy; source *stuff* classes pooled over their correctly classified
pixels and source *thing* instances (8-connected components, the 10 largest) pooled likewise, each kept if the
classifier agrees with its class, written into FIFO banks (stuff 8 × 50, things 11 × 500); on the target, the same
pools over the *predicted* masks are pulled to the nearest entry of their class's bank once that bank is full
(L_cls for stuff, L_ins for thing instances, the latter weighted per class by AIM); an output-space discriminator
(AdaptSegNet single-level); ISIA's inter-class separation; in step 2, cross-entropy on the step-1 model's
pseudo-labels (per-class median confidence capped at 0.9, the softmax taken before upsampling as released,
``udalib.pseudo_labels``). Step 1 is plain SIM (no ISIA,
no AIM); the released step 2 does not run as committed (undefined names, an IndexError): this one does.

    L = CE_s + λ_adv·L_adv + λ_cls·L_cls + λ_ins·L_AIM + λ_sep·L_ISIA + λ_tce·CE_t(pseudo-labels)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..inference import level_maps, upsample
from ..losses.aim import AlignComplexity, self_weighted
from ..losses.contrastive import downsample_labels, flatten_pixels
from ..losses.feature_banks import FeatureBank
from ..losses.instances import instance_masks
from ..losses.isia import isia_terms, stuff_thing_separation
from ..losses.masked_pooling import class_masks, classifier_agrees, correct_labels, masked_average_pool
from ..losses.prototypes import class_prototypes
from ..losses.segmentation import seg_ce
from .adaptsegnet import AdaptSegNet, AdaptSegNetConfig
from .base import Backward, Batch, Variant
from .supervised import source_ce_step

#: Cityscapes-19 train ids of the stuff classes (road, sidewalk, building, wall, fence, vegetation, terrain, sky);
#: the other classes are things (BAFFT's ``train_step1.py``).
STUFF_19 = (0, 1, 2, 3, 4, 8, 9, 10)


@dataclass(frozen=True)
class BAFFTConfig(AdaptSegNetConfig):
    """Step 1's released values (SIM's): single-level output-space GAN λ 0.001, bank terms 0.01 each."""

    lambda_seg_aux: float = 0.0
    lambda_adv_aux: float = 0.0
    lambda_adv_main: float = 0.001
    lambda_cls: float = 0.01  # stuff: target class pools to the stuff bank
    lambda_ins: float = 0.01  # things: target instance pools to the instance bank (AIM-weighted)
    lambda_sep: float = 0.0  # ISIA (step 1 has none)
    lambda_target_ce: float = 0.0  # step 2: CE on the step-1 model's pseudo-labels
    stuff_classes: tuple[int, ...] = STUFF_19  # every other class is a thing
    stuff_slots: int = 50
    thing_slots: int = 500
    top_instances: int = 10
    isia: str = "paper"  # paper: same class together, β·(1 + cos)/2 apart | released: target stuff vs target things
    isia_beta: float = 1.0
    aim: str = "complexity"  # complexity (running ζ_k → η_k) | off | self_weighted (released HEAD, d²)
    aim_momentum: float = 0.99


class BAFFT(AdaptSegNet):
    """Step 1 and step 2 are this class with different configs (module docstring)."""

    #: the step-1 model's pseudo-labels as ``Generate_Pseudo_Label.py`` makes them (SIM's ``SSL.py``)
    pseudo_label_order = "softmax_then_upsample"

    def __init__(self, cfg: BAFFTConfig, num_classes: int, **kw):
        super().__init__(cfg, num_classes, **kw)
        if cfg.isia not in ("paper", "released") or cfg.aim not in ("complexity", "off", "self_weighted"):
            raise ValueError(f"BAFFT: isia must be paper|released and aim complexity|off|self_weighted, got {cfg}")
        if max(cfg.stuff_classes) >= num_classes:
            raise ValueError(f"BAFFT: stuff_classes {cfg.stuff_classes} do not fit {num_classes} classes")
        self.stuff = list(cfg.stuff_classes)
        self.things = [k for k in range(num_classes) if k not in self.stuff]
        self.stuff_bank = FeatureBank(len(self.stuff), cfg.stuff_slots, self.feature_dim)
        self.thing_bank = FeatureBank(len(self.things), cfg.thing_slots, self.feature_dim)
        self.complexity = AlignComplexity(len(self.things), cfg.aim_momentum)
        index = torch.full((num_classes,), -1, dtype=torch.long)  # train id → row of its bank
        index[self.stuff] = torch.arange(len(self.stuff))
        index[self.things] = torch.arange(len(self.things))
        self.register_buffer("bank_row", index, persistent=False)

    @property
    def needs_pseudo_labels(self) -> bool:
        return self.cfg.lambda_target_ce > 0

    def _stuff_pools(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(N, D) pools of the stuff classes present in each image of `labels` (B, h, w), and their train ids."""
        masks = class_masks(labels, self.stuff)  # (B, S, h, w)
        pooled = masked_average_pool(features, masks)  # (B, S, D)
        present = masks.sum(dim=(2, 3)) > 0
        ids = torch.as_tensor(self.stuff, device=labels.device).expand_as(present)
        return pooled[present], ids[present]

    def _instance_pools(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, D) pools of the largest thing instances of each image, their train ids and their image index."""
        masks, owner = instance_masks(labels, self.things, self.cfg.top_instances)
        if masks.shape[1] == 0:
            empty = labels.new_zeros(0)
            return features.new_zeros(0, features.shape[1]), empty, empty
        pooled = masked_average_pool(features, masks)  # (B, n, D)
        valid = owner >= 0
        image = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(owner)
        return pooled[valid], owner[valid], image[valid]

    def _fill_banks(self, model, out_s, source: Batch) -> None:
        """Source pools of correctly classified pixels the classifier agrees with, into the banks (detached)."""
        size = tuple(out_s.features.shape[-2:])
        right = correct_labels(downsample_labels(source.label, size), out_s.logits.argmax(dim=1))
        feats = out_s.features.detach().float()
        head = model.main_head
        for pools, ids, bank in (
            (*self._stuff_pools(feats, right), self.stuff_bank),
            (*self._instance_pools(feats, right)[:2], self.thing_bank),
        ):
            if ids.numel():
                keep = classifier_agrees(head, pools, ids)
                bank.push(self.bank_row[ids[keep]], pools[keep])

    def _usable_stuff(self, model, pools: Tensor, ids: Tensor) -> Tensor:
        """(N,) bool: the stuff pools whose class's bank is full and with which the classifier agrees (the
        released code's two filters before a target stuff vector enters L_cls or the separation)."""
        keep = self.stuff_bank.ready()[self.bank_row[ids]]
        if keep.any():
            keep &= classifier_agrees(model.main_head, pools, ids)
        return keep

    def _bank_terms(self, model, out_t) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(L_cls, L_ins, logs) of the target's predicted stuff pools and instances against the full banks."""
        pred = out_t.logits.detach().argmax(dim=1)
        feats = out_t.features.float()
        zero = feats.sum() * 0
        b = pred.shape[0]
        # stuff: the classifier must agree with the predicted class, and the class's bank must be full
        pools, ids = self._stuff_pools(feats, pred)
        rows = self.bank_row[ids]
        keep = self._usable_stuff(model, pools, ids)
        d = self.stuff_bank.nearest_distance(pools[keep], rows[keep]) if keep.any() else zero[None][:0]
        l_cls = (self_weighted(d) if self.cfg.aim == "self_weighted" else d).sum() / b if d.numel() else zero
        # things: every predicted instance of a ready class, the mean per (image, class), weighted by η_k
        pools, ids, image = self._instance_pools(feats, pred)
        l_ins, n_inst = zero, 0
        if ids.numel():
            rows = self.bank_row[ids]
            keep = self.thing_bank.ready()[rows]
            if keep.any():
                rows, image, pools = rows[keep], image[keep], pools[keep]
                d = self.thing_bank.nearest_distance(pools, rows)
                self.complexity.update(rows, d)
                if self.cfg.aim == "complexity":
                    d = d * self.complexity.weights()[rows]
                elif self.cfg.aim == "self_weighted":
                    d = self_weighted(d)
                group = image * len(self.things) + rows  # mean over the instances of each (image, class)
                sums = torch.zeros(b * len(self.things), device=d.device).index_add(0, group, d.float())
                counts = torch.bincount(group, minlength=b * len(self.things))
                l_ins = (sums[counts > 0] / counts[counts > 0]).sum() / b
                n_inst = int(keep.sum())
        logs = {
            "stuff_ready": self.stuff_bank.ready().float().mean(),
            "thing_ready": self.thing_bank.ready().float().mean(),
            "instances": torch.tensor(float(n_inst)),
        }
        return l_cls, l_ins, logs

    def _isia(self, model, out_s, source: Batch, out_t) -> Tensor:
        """L_ISIA: the paper's reading on batch class representations, or the released stuff-things separation
        (``train_step2.py``: a stuff vector counts when its bank is full and the classifier agrees with it, a thing
        instance when its class's bank is full)."""
        pred_t = out_t.logits.detach().argmax(dim=1)
        feats_t = out_t.features.float()
        if self.cfg.isia == "released":
            stuff, stuff_ids = self._stuff_pools(feats_t, pred_t)
            stuff = stuff[self._usable_stuff(model, stuff, stuff_ids)]
            things, ids, _ = self._instance_pools(feats_t, pred_t)
            ready = self.thing_bank.ready()[self.bank_row[ids]]
            return stuff_thing_separation(stuff, things[ready], ids[ready], scale=500 / 2048)
        # the source labels at the source's feature size: the paper's source and target images differ in size
        right = correct_labels(
            downsample_labels(source.label, tuple(out_s.features.shape[-2:])), out_s.logits.argmax(dim=1)
        )
        # class means over the batch; the source ones are anchors (no gradient)
        rep_s, seen_s = class_prototypes(
            flatten_pixels(out_s.features.detach().float()), right.reshape(-1), self.num_classes
        )
        rep_t, seen_t = class_prototypes(flatten_pixels(feats_t), pred_t.reshape(-1), self.num_classes)
        agg, sep = isia_terms(rep_s, rep_t, seen_s, seen_t)
        return agg + self.cfg.isia_beta * sep

    def training_step(self, model, source: Batch, target: Batch, step: int, backward: Backward) -> dict[str, Tensor]:
        cfg = self.cfg
        seg, out_s = source_ce_step(model, source, cfg.lambda_seg_aux, backward)
        self._fill_banks(model, out_s, source)
        out_t = model(target.image)
        l_cls, l_ins, logs = self._bank_terms(model, out_t)
        loss = cfg.lambda_cls * l_cls + cfg.lambda_ins * l_ins
        if cfg.lambda_sep > 0:
            logs["isia"] = self._isia(model, out_s, source, out_t)
            loss = loss + cfg.lambda_sep * logs["isia"]
        if cfg.lambda_target_ce > 0:  # step 2: target.label holds the pseudo-labels
            logs["ce_t"] = seg_ce(upsample(out_t.logits, tuple(target.label.shape[-2:])), target.label)
            loss = loss + cfg.lambda_target_ce * logs["ce_t"]
        size = tuple(target.image.shape[-2:])
        maps_t = level_maps(out_t, size, self.discriminator_input)
        adv = self.disc.generator_step(maps_t)
        backward(loss + adv)
        maps_s = level_maps(out_s, tuple(source.image.shape[-2:]), self.discriminator_input)
        d_logs = self.disc.discriminator_step(maps_s, maps_t, backward)
        logs = {k: v.detach() for k, v in logs.items()}
        return {"seg": seg, "adv": adv.detach(), "cls": l_cls.detach(), "ins": l_ins.detach(), **logs, **d_logs}


#: Step 2 (released HEAD values): all alignment weights 0.001, CE on the pseudo-labels, ISIA and AIM on.
STEP2 = BAFFTConfig(lambda_cls=0.001, lambda_ins=0.001, lambda_sep=0.001, lambda_target_ce=1.0)

VARIANTS = {
    "bafft_step1": Variant(
        BAFFT,
        BAFFTConfig(aim="off"),
        "BAFFT step 1 (SIM): output-space GAN + stuff-bank and instance-bank alignment",
    ),
    "bafft": Variant(
        BAFFT, STEP2, "BAFFT step 2: step 1's terms + ISIA + AIM + CE on the step-1 model's pseudo-labels"
    ),
}

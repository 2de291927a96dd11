"""The paper preset's code path on the CPU (issue #16): every method's ``paper`` configuration trained through its
stage chain for 2 iterations at a tiny input size, on SynthCity written in the GTA5, Cityscapes and SYNTHIA layouts.

The paper preset needs CUDA; ``UDABOOK_PAPER_ON_CPU=1``, a test-only switch set here with monkeypatch, lifts that.
Each run is ``resolve(method, "paper", ...)`` shrunk by what changes no code path: a 33×65 network input, batch 1,
no gradient accumulation, 2 iterations, 4 source / 3 target-train / 2 target-val images. Labels stay at SynthCity's
64×128, where evaluation and pseudo-labels live. What is checked:

* the weights: ImageNet from the torch hub cache (state dicts in torchvision's layout built here and saved under
  torchvision's file names in a private ``$TORCH_HOME``), and the seeds' Caffe DeepLab init (the ResNet-101's keys
  under ``Scale.``, a 21-class VOC head, ``normalization="caffe_bgr"``) for ADVENT, whose seeds start from such a
  file. The random ResNet-101 weights are made to train as pretrained ones do (:func:`calibrated_resnet101`);
* stage chains, wired explicitly (a ``stage:`` reference would re-resolve its stage at the preset's full size and
  length): every ``stage:`` reference of a paper row becomes this file's run of that stage, e.g. sdca_source ->
  init of sdca -> pseudo-labels of sdca -> sdca_ssl. Rows without one start from the pretrained weights, as the
  seeds do;
* multi-level heads, the discriminators and their Adam states, SDCA's estimators, all in the checkpoint;
* exact resume from a step-1 checkpoint;
* evaluation at the labels' full resolution.

Each method runs once, ResNet-101 on the GTA5 layout, except: adaptsegnet_ls on the SYNTHIA layout (16 classes),
advent from the seeds' init, and one extra VGG-16 run (no method has a VGG-16 paper row; AdaptSegNet's single-level
VGG-16 is the seeds' VGG configuration). ResNet-101 is the cost: a few seconds a run, mostly its 0.4 GB checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from fixtures import write_png16
from PIL import Image
from test_checkpoints import seeds_init_state

import udalib.models
import udalib.train
from udalib import stages
from udalib.config import STAGE_PREFIX, RunConfig
from udalib.data import synthcity
from udalib.data.domains import build_domains
from udalib.data.gta5 import GTA5
from udalib.data.labels import CITYSCAPES_CLASSES, SYNTHIA_ID_TO_NAME, get_protocol
from udalib.data.transforms import eval_transform
from udalib.methods import REGISTRY
from udalib.models import DeepLabV2ResNet101, imagenet_checkpoint_path
from udalib.models.checkpoints import LoadReport, read_checkpoint
from udalib.models.deeplabv2 import batchnorms
from udalib.models.trained import TRAINER_KEYS, load_trained
from udalib.models.vgg import FC6_FC7_PREFIXES
from udalib.presets import resolve
from udalib.pseudo_labels import PSEUDO_SUFFIX, THRESHOLDS_FILE, generate_pseudo_labels
from udalib.train import TrainResult

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # one module fixture trains every run

ITERS = 2
SIZE = (33, 65)  # network input of target and evaluation (odd: the stride-8 feature maps round up)
SOURCE_SIZE = (45, 81)  # the source's differs, as the paper's 1280×720 and 1024×512 do (other feature maps)
SPEC = synthcity.SynthCitySpec(height=64, width=128, n_source=4, n_target_train=3, n_target_val=2)
LABELS = (SPEC.height, SPEC.width)  # full label resolution

#: How a run departs from its method's paper row besides the tiny size: every registered method runs once.
RUNS: dict[str, dict] = {
    **{method: {} for method in REGISTRY},
    "adaptsegnet_ls": dict(dataset="synthia"),
    "advent": dict(pretrained="seeds", normalization="caffe_bgr"),
    "vgg16": dict(method="adaptsegnet_single", backbone="vgg16"),
}
#: Runs that also write their step-1 checkpoint, to be resumed from it: segmenter, SGD momentum, two discriminators
#: and their Adam states, the aux head. Not SDCA stage 3: with its colour augmentation a resumed run draws other
#: augmentations than an uninterrupted one (a known gap of the trainer's resume, not of the paper path).
RESUMED = ("adaptsegnet_multi",)
#: Discriminators (one Adam each) of the adversarial runs: one per level, and globallocal's local ones.
DISCRIMINATORS = {
    "adaptsegnet_single": ("disc.nets.main",),
    "adaptsegnet_ls": ("disc.nets.main",),
    "vgg16": ("disc.nets.main",),
    "adaptsegnet_multi": ("disc.nets.aux", "disc.nets.main"),
    "advent": ("disc.nets.aux", "disc.nets.main"),
    "globallocal": ("disc.nets.aux", "disc.nets.main", "local.nets.aux", "local.nets.main"),
}


# -- the data and the weights, written once ------------------------------------------------------------------------


def write_synthcity_as_synthia(root: Path, spec: synthcity.SynthCitySpec) -> Path:
    """SynthCity's source images in SYNTHIA-RAND-CITYSCAPES's layout: ``RGB/NNNNNNN.png`` and 16-bit
    ``GT/LABELS/NNNNNNN.png`` with the SYNTHIA class id in channel 0 (terrain, truck and train, which SYNTHIA
    lacks, and void become id 0, void)."""
    to_synthia = np.zeros(256, dtype=np.uint16)  # Cityscapes train id -> SYNTHIA class id
    for synthia_id, name in SYNTHIA_ID_TO_NAME.items():
        to_synthia[CITYSCAPES_CLASSES.index(name)] = synthia_id
    for i in range(spec.n_source):
        image, label = synthcity.render_item(spec, "source", "train", i)
        (root / "RGB").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "RGB" / f"{i:07d}.png")
        ids, zeros = to_synthia[label], np.zeros(label.shape, dtype=np.uint16)
        write_png16(root / "GT" / "LABELS" / f"{i:07d}.png", np.stack([ids, zeros, zeros], -1))
    return root


def _distinct_stem(state: dict[str, torch.Tensor], seed: int, prefix: str = "") -> None:
    """Give the stem's BN affine values no init would give, so that frozen-BN runs can be traced to their file."""
    g = torch.Generator().manual_seed(seed)
    state[f"{prefix}bn1.weight"] = torch.rand(64, generator=g) + 0.5
    state[f"{prefix}bn1.bias"] = torch.rand(64, generator=g) - 0.5


@torch.no_grad()
def calibrated_resnet101(source: Path, normalization: str) -> DeepLabV2ResNet101:
    """A randomly initialised DeepLab ResNet-101 that trains as a pretrained one does: each residual branch ends
    with BN's γ = 0.1 (as zero-init-residual training starts) and the BN statistics are those of the source images
    under `normalization` (one pass in train mode). Plain random weights do not: with BN at its init statistics the
    activations of a frozen-BN run (SDCA) reach 1e4 by layer4, and with calibrated statistics but γ = 1 the CE of
    SDCA's stage 1 jumps from 3.5 to 1e8 after its first SGD step (5e-4) and stage 3's loss is NaN."""
    torch.manual_seed(0)
    model = DeepLabV2ResNet101(19, multi_level=False, bn_mode="trainable")
    for name, module in model.named_modules():
        if name.endswith(".bn3"):
            module.weight.fill_(0.1)
    for bn in batchnorms(model):
        bn.momentum = None  # the running statistics become those of the pass
        bn.reset_running_stats()
    ds = GTA5(source, eval_transform(size=None, normalization=normalization), protocol=get_protocol("cityscapes19"))
    model.train()(torch.stack([ds[i][0] for i in range(len(ds))]))
    return model.eval()


def write_weights(root: Path) -> tuple[dict[str, Path], dict[Path, torch.Tensor]]:
    """ImageNet ResNet-101 and VGG-16 in the torch hub cache (torchvision's keys and file names, random values)
    and the seeds' DeepLab init (the real ResNet-101's keys under ``Scale.``, a 21-class VOC layer5): {name: file},
    and the ResNet files' stem BN weights."""
    source = root / "synthcity" / "source"
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)

    with torch.device("meta"):  # torchvision's layout, without building its 44 M parameters
        layout = {k: v.shape for k, v in torchvision.models.resnet101().state_dict().items()}
    backbone = {k: v for k, v in calibrated_resnet101(source, "imagenet_rgb").state_dict().items() if k in layout}
    assert {k: v.shape for k, v in backbone.items()} == {k: s for k, s in layout.items() if not k.startswith("fc.")}
    g = torch.Generator().manual_seed(1)
    resnet = {**backbone, "fc.weight": torch.randn(1000, 2048, generator=g) * 0.01, "fc.bias": torch.zeros(1000)}
    _distinct_stem(resnet, seed=2)

    # VGG-16: torchvision's init of the convs (Kaiming, fan-out); the ImageNet classifier, which udalib drops, as
    # zero tensors of its shapes on a one-element storage (120 M parameters that would cost seconds to write)
    with torch.device("meta"):
        vgg_layout = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    g = torch.Generator().manual_seed(3)
    vgg = {}
    for key, shape in vgg_layout.items():
        if key.startswith("classifier."):
            vgg[key] = torch.zeros(()).expand(shape)
        elif key.endswith(".weight"):
            vgg[key] = torch.randn(shape, generator=g) * math.sqrt(2 / (shape[0] * shape[2] * shape[3]))
        else:
            vgg[key] = torch.zeros(shape)

    files = {}
    for arch, state, weights in (
        ("resnet101", resnet, torchvision.models.ResNet101_Weights.IMAGENET1K_V1),
        ("vgg16", vgg, torchvision.models.VGG16_Weights.IMAGENET1K_V1),
    ):
        files[arch] = hub / weights.url.rsplit("/", 1)[-1]
        torch.save(state, files[arch])
        assert imagenet_checkpoint_path(arch) == files[arch]  # where udalib looks: nothing is downloaded

    seeds = seeds_init_state(calibrated_resnet101(source, "caffe_bgr"))
    _distinct_stem(seeds, seed=4, prefix="Scale.")
    files["seeds"] = root / "DeepLab_resnet_pretrained_imagenet.pth"
    torch.save(seeds, files["seeds"])
    return files, {files["resnet101"]: resnet["bn1.weight"], files["seeds"]: seeds["Scale.bn1.weight"]}


def labelled_val_pixels(target_root: Path, protocol: str) -> int:
    """Pixels of target val with a class of `protocol`, read from the label files at their full resolution."""
    lut = get_protocol(protocol).cityscapes_lut
    files = sorted((target_root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    assert len(files) == SPEC.n_target_val
    labels = [np.asarray(Image.open(f)) for f in files]
    assert all(lab.shape == LABELS for lab in labels)
    return sum(int((lut[lab] != 255).sum()) for lab in labels)


# -- the runs, made once each, on first use ------------------------------------------------------------------------


@dataclass
class Run:
    cfg: RunConfig
    result: TrainResult
    pretrained: list[tuple[Path, LoadReport]]  # every load of initial weights (ImageNet or the seeds' file)
    init: list[Path]  # every init_checkpoint loaded (a stage's final checkpoint)
    stages: dict[str, str]  # the paper row's stage references: {"init_checkpoint" or "pseudo_label_dir": method}
    _final: dict | None = None

    def final(self) -> dict:
        """The final checkpoint without the backbone's tensors and their momentum (0.4 GB): the model as ``shapes``
        and the stem's ``bn1.weight``, the optimiser's head group with its state. Memory-mapped: only what is kept is
        read (udalib's reader reads these files in the stage chains, the resume and the pseudo-labels)."""
        if self._final is None:
            state = torch.load(self.cfg.final_checkpoint, map_location="cpu", weights_only=True, mmap=True)
            assert set(TRAINER_KEYS) <= set(state)
            model, opt = state["model"], state["optimizer"]
            heads = opt["param_groups"][1]["params"]
            state["shapes"] = {k: tuple(v.shape) for k, v in model.items()}
            state["model"] = {k: v for k, v in model.items() if k == "bn1.weight"}
            state["optimizer"] = {
                "head_group": opt["param_groups"][1],
                "state": {i: opt["state"].get(i) for i in heads},
            }
            self._final = state
        return self._final


@dataclass
class PaperRuns:
    root: Path
    weights: dict[str, Path]
    stems: dict[Path, torch.Tensor]  # the stem's BN weight in each ResNet-101 weights file
    done: dict[str, Run] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    current: str = ""
    pretrained_loads: dict = field(default_factory=lambda: defaultdict(list))
    init_loads: dict = field(default_factory=lambda: defaultdict(list))
    pseudo_label_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def target(self) -> Path:
        return self.root / "synthcity" / "target"

    def config(self, name: str) -> tuple[RunConfig, dict[str, str]]:
        """The paper row of the run's method with the run's overrides, shrunk, its stages wired to this file's runs;
        and the row's stage references."""
        spec = dict(RUNS[name])
        method, dataset = spec.pop("method", name), spec.pop("dataset", "gta5")
        if spec.get("pretrained") == "seeds":
            spec["pretrained"] = str(self.weights["seeds"])
        source = self.root / "synthia" if dataset == "synthia" else self.root / "synthcity" / "source"
        cfg = resolve(
            method,
            "paper",
            dataset=dataset,
            data_root=str(source),
            target_root=str(self.target),
            device="cpu",
            iters=ITERS,
            out_dir=str(self.root / "runs" / name),
            **spec,
        )
        data = dataclasses.replace(cfg.data, source_size=SOURCE_SIZE, target_size=SIZE, eval_size=SIZE, num_workers=0)
        every = 1 if name in RESUMED else ITERS
        train = dataclasses.replace(
            cfg.train,
            batch_source=1,
            batch_target=1,
            accum=1,
            eval_every=ITERS,
            checkpoint_every=every,
            log_every=1,
        )
        refs = {
            key: value.removeprefix(STAGE_PREFIX)
            for key, value in (("init_checkpoint", train.init_checkpoint), ("pseudo_label_dir", data.pseudo_label_dir))
            if value and value.startswith(STAGE_PREFIX)
        }
        if "init_checkpoint" in refs:
            stage = self.get(refs["init_checkpoint"]).cfg
            train = dataclasses.replace(train, init_checkpoint=str(stage.final_checkpoint))
        if "pseudo_label_dir" in refs:
            data = dataclasses.replace(data, pseudo_label_dir=str(self.pseudo_labels(refs["pseudo_label_dir"])))
        return dataclasses.replace(cfg, data=data, train=train), refs

    def get(self, name: str) -> Run:
        if name in self.failed:
            pytest.fail(f"the run {name} failed earlier: {self.failed[name]}")
        if name not in self.done:
            try:
                cfg, refs = self.config(name)
                self.current = name
                result = stages.run(cfg, progress="none")
            except Exception as err:
                self.failed[name] = f"{type(err).__name__}: {err}"
                raise
            self.done[name] = Run(cfg, result, self.pretrained_loads[name], self.init_loads[name], refs)
        return self.done[name]

    def pseudo_labels(self, name: str) -> Path:
        """Pseudo-labels of run `name`'s final model on target train, as ``stages.stage_pseudo_labels`` makes them,
        at the labels' resolution (that function assumes real Cityscapes' 1024x2048 for the Cityscapes layout)."""
        if name not in self.pseudo_label_dirs:
            run = self.get(name)
            out = self.root / "pseudo_labels" / name
            generate_pseudo_labels(
                load_trained(run.cfg.final_checkpoint, "cpu"),
                build_domains(run.cfg).pseudo_label_loader(),
                out,
                num_classes=get_protocol(run.cfg.data.protocol).num_classes,
                label_size=LABELS,
                device="cpu",
                order=REGISTRY[run.cfg.method].cls.pseudo_label_order,  # BAFFT's released order, SDCA's own
            )
            self.pseudo_label_dirs[name] = out
        return self.pseudo_label_dirs[name]


@pytest.fixture(scope="module")
def runs(tiny_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper-path")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UDABOOK_PAPER_ON_CPU", "1")  # test-only: the paper preset on the CPU
        mp.setenv("TORCH_HOME", str(root / "torch"))
        synthcity.generate(root / "synthcity", SPEC, workers=1)
        write_synthcity_as_synthia(root / "synthia", SPEC)
        paper = PaperRuns(root, *write_weights(root))

        load_into, load_weights = udalib.models.load_checkpoint_into, udalib.train.load_weights

        def recorded_load_into(model, path_or_state, **kw):  # build_model's load of `pretrained`
            report = load_into(model, path_or_state, **kw)
            assert not isinstance(path_or_state, Mapping)
            paper.pretrained_loads[paper.current].append((Path(path_or_state), report))
            return report

        def recorded_load_weights(model, path, **kw):  # the trainer's load of `init_checkpoint`
            load_weights(model, path, **kw)
            paper.init_loads[paper.current].append(Path(path))

        mp.setattr(udalib.models, "load_checkpoint_into", recorded_load_into)
        mp.setattr(udalib.train, "load_weights", recorded_load_weights)
        yield paper
    shutil.rmtree(root, ignore_errors=True)  # about 0.4 GB of checkpoints per run


# -- every run -----------------------------------------------------------------------------------------------------


def test_every_method_runs_here():
    assert set(REGISTRY) <= set(RUNS)


@pytest.mark.parametrize("name", list(RUNS))
def test_paper_run_trains_and_evaluates_at_full_label_resolution(runs, name):
    run = runs.get(name)
    cfg, protocol = run.cfg, get_protocol(run.cfg.data.protocol)
    assert cfg.preset == "paper" and cfg.train.device == "cpu"
    assert cfg.train.backbone == RUNS[name].get("backbone", "resnet101")
    assert not any(str(v).startswith(STAGE_PREFIX) for v in (cfg.train.init_checkpoint, cfg.data.pseudo_label_dir))

    out = Path(cfg.out_dir)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2]
    assert all(math.isfinite(v) for row in log for v in row.values()), log
    # sane weights train sanely: the segmentation loss stays near ln K (a diverging run passes only "finite")
    seg = [row["seg"] if "seg" in row else row["ce"] for row in log]
    assert max(seg) < 2 * math.log(protocol.num_classes), log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == cfg.method and metrics["preset"] == "paper" and metrics["iters"] == ITERS
    assert math.isfinite(metrics["miou"]) and metrics["classes"] == protocol.num_classes
    assert [e["step"] for e in metrics["evals"]] == [ITERS]

    # evaluated at the labels' 64x128, not at the 33x65 input: the confusion matrix counts every labelled pixel
    final = run.result.final
    assert final.confusion.shape == (protocol.num_classes,) * 2
    assert int(final.confusion.sum()) == labelled_val_pixels(runs.target, protocol.name)
    assert int(final.confusion.sum()) > SPEC.n_target_val * SIZE[0] * SIZE[1]

    state = run.final()
    assert state["step"] == ITERS and state["num_classes"] == protocol.num_classes
    assert state["backbone"] == cfg.train.backbone


@pytest.mark.parametrize("name", list(RUNS))
def test_initial_weights_come_from_imagenet_or_the_seeds_init(runs, name):
    run = runs.get(name)
    [(path, report)] = run.pretrained
    final = run.final()
    heads = {k.split(".")[0] for k in final["shapes"] if k.startswith(("layer5.", "layer6.", "classifier."))}
    missing = {k.split(".")[0] if not k.startswith("features.") else ".".join(k.split(".")[:2]) for k in report.missing}
    if RUNS[name].get("pretrained") == "seeds":
        assert path == runs.weights["seeds"] and report.source == "seed"
        assert run.cfg.data.normalization == "caffe_bgr"
        assert set(report.skipped) == {f"layer5.conv2d_list.{i}.{p}" for i in range(4) for p in ("weight", "bias")}
        assert all("21-class head on 2048 channels" in why for why in report.skipped.values())
        assert missing == heads  # the VOC head is dropped, both heads start at init, as in the seeds
    elif run.cfg.train.backbone == "vgg16":
        assert path == runs.weights["vgg16"] and report.source == "torchvision"
        assert set(report.skipped) == {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
        assert missing == {"classifier", *(p.rstrip(".") for p in FC6_FC7_PREFIXES)}
    else:
        assert path == runs.weights["resnet101"] and report.source == "torchvision"
        assert set(report.skipped) == {"fc.weight", "fc.bias"}
        assert missing == heads
    # nothing else is left at init (the seeds' pre-1.0 file has no BN counters)
    assert {k for k in final["shapes"] if not k.endswith("num_batches_tracked")} <= {*report.loaded, *report.missing}

    # a row that starts from a stage starts from that stage's final model (loaded after the pretrained weights)
    stage = run.stages.get("init_checkpoint")
    assert run.init == ([runs.get(stage).cfg.final_checkpoint] if stage else [])

    if run.cfg.train.backbone == "resnet101" and run.cfg.train.bn_mode != "trainable":
        # BN's affine is frozen: the stem's values of the file are those of the trained model, through every stage
        assert torch.equal(final["model"]["bn1.weight"], runs.stems[path])


# -- what each kind of method adds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in RUNS if RUNS[n].get("backbone") != "vgg16"])
def test_multi_level_runs_train_both_heads(runs, name):
    run = runs.get(name)
    state = run.final()
    heads = ["layer5", "layer6"] if run.cfg.train.multi_level else ["layer6"]
    assert sorted({k.split(".")[0] for k in state["shapes"] if k.startswith(("layer5.", "layer6."))}) == heads
    # every head parameter got a gradient (SGD keeps a momentum buffer only for those): the aux CE reaches layer5
    head_group, head_state = state["optimizer"]["head_group"], state["optimizer"]["state"]
    assert head_group["initial_lr"] == pytest.approx(run.cfg.train.lr * run.cfg.train.head_lr_mult)
    assert len(head_group["params"]) == 8 * len(heads)
    assert all(s is not None and s["momentum_buffer"].abs().sum() > 0 for s in head_state.values())


@pytest.mark.parametrize("name", list(DISCRIMINATORS))
def test_adversarial_runs_checkpoint_discriminators_and_their_optimisers(runs, name):
    state = runs.get(name).final()
    assert {".".join(k.split(".")[:3]) for k in state["method"]} == set(DISCRIMINATORS[name])
    assert len(state["aux_optimizers"]) == len(DISCRIMINATORS[name])
    for adam in state["aux_optimizers"]:
        assert adam["state"], "an Adam optimiser without state: its discriminator never stepped"
        assert all(int(s["step"]) == ITERS and s["exp_avg"].abs().sum() > 0 for s in adam["state"].values())


def test_sdca_chain_init_estimators_pseudo_labels_and_self_training(runs):
    source, sdca, ssl = runs.get("sdca_source"), runs.get("sdca"), runs.get("sdca_ssl")
    # stage 3 starts from stage 1's final model, with its source augmentation and class-balanced sampler
    assert sdca.stages == {"init_checkpoint": "sdca_source"} and sdca.init == [source.cfg.final_checkpoint]
    assert sdca.cfg.data.source_sampling == "class_balanced" and sdca.cfg.data.source_aug == "sdca_color"
    # its estimators travel in the checkpoint: the initial pass over the 4 source images and 2 updates
    method = sdca.final()["method"]
    assert method["feat_stats.mean"].shape == (19, 2048) and method["out_stats.mean"].shape == (19, 19)
    assert method["feat_stats.count"].dtype == torch.float64 and method["feat_stats.count"].sum() > 0
    assert torch.equal(method["feat_stats.count"], method["out_stats.count"])
    assert torch.isfinite(method["feat_stats.var"]).all() and method["feat_stats.var"].sum() > 0

    # pseudo-labels of stage 3 on target train at the labels' resolution; stage 4 trains a fresh network on them
    assert ssl.stages == {"pseudo_label_dir": "sdca"}
    folder = Path(ssl.cfg.data.pseudo_label_dir)
    assert (folder / THRESHOLDS_FILE).is_file()
    files = sorted(folder.rglob(f"*{PSEUDO_SUFFIX}"))
    assert len(files) == SPEC.n_target_train
    assert all(np.asarray(Image.open(f)).shape == LABELS for f in files)
    assert ssl.cfg.data.labelled == "target" and ssl.cfg.data.labelled_aug == "scale_crop"
    assert ssl.init == [] and ssl.cfg.train.bn_mode == "trainable" and not ssl.cfg.train.multi_level


def test_synthia_layout_trains_16_classes_and_reports_13(runs):
    run = runs.get("adaptsegnet_ls")
    assert run.cfg.data.source == "synthia" and run.cfg.data.protocol == "synthia16"
    assert run.final()["shapes"]["layer6.conv2d_list.0.weight"][0] == 16
    assert set(run.result.final.miou) == {16, 13}


@pytest.mark.parametrize("name", RESUMED)
def test_resume_from_step_1_ends_where_the_uninterrupted_run_ends(runs, name, capsys):
    full = runs.get(name)
    folder = Path(full.cfg.out_dir)
    part = runs.root / "resumed" / name
    part.mkdir(parents=True)
    runs.current = f"{name} resumed"
    for f in ("config.json", "log.jsonl", "evals.jsonl"):  # the folder as if the run had stopped after step 1
        shutil.copy(folder / f, part / f)
    os.link(folder / "checkpoint_0000001.pt", part / "checkpoint_0000001.pt")  # written once, never changed
    stages.run(dataclasses.replace(full.cfg, out_dir=str(part), resume="auto"), progress="none")
    assert f"resumed from {part / 'checkpoint_0000001.pt'} at iteration 1" in capsys.readouterr().out
    a = read_checkpoint(full.cfg.final_checkpoint, require=TRAINER_KEYS)
    b = read_checkpoint(part / "checkpoint_0000002.pt", require=TRAINER_KEYS)
    for key in ("model", "method"):
        assert a[key].keys() == b[key].keys()
        for name_, value in a[key].items():
            torch.testing.assert_close(b[key][name_], value, rtol=0, atol=0, msg=f"{key}.{name_}")
    torch.testing.assert_close(b["optimizer"]["state"], a["optimizer"]["state"], rtol=0, atol=0)
    for adam_a, adam_b in zip(a["aux_optimizers"], b["aux_optimizers"], strict=True):
        torch.testing.assert_close(adam_b["state"], adam_a["state"], rtol=0, atol=0)
    shutil.rmtree(part)


def test_paper_preset_on_the_cpu_is_refused_without_the_test_switch(monkeypatch):
    monkeypatch.delenv("UDABOOK_PAPER_ON_CPU", raising=False)
    with pytest.raises(RuntimeError, match="needs CUDA") as err:
        resolve("source_only", "paper", data_root="/gta5", target_root="/cityscapes", device="cpu")
    assert "UDABOOK_PAPER_ON_CPU" not in str(err.value)

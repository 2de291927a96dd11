"""The ``udalib`` command: train, evaluate, data (synthcity | check), pseudo-label, reproduce, pretrain, clean.

Every subcommand uses the same presets as the chapters, so a number is reproducible from either.
"""

from __future__ import annotations

import argparse
import json
import sys

# Only light modules at the top: `udalib --help` answers without importing torch; each command imports its own.
from .config import SHIFT_KNOBS
from .user_error import UserError

#: Every command is one a quick run makes true (tests/test_cli.py runs them in this order on a tiny set).
EXAMPLES = """examples:
  # the main job (CPU, minutes), then the upper bound: trained on the target labels
  udalib train --method source_only --preset quick
  udalib train --method oracle --preset quick
  # score a run folder (its last checkpoint; a checkpoint file works too), label with it
  udalib evaluate --checkpoint runs/quick/source_only/seed0
  udalib pseudo-label --checkpoint runs/quick/source_only/seed0 --out runs/pl
  # start over (the old run is moved aside), list the old runs with sizes, delete them
  udalib train --method source_only --preset quick --overwrite
  udalib clean
  udalib clean --remove
  # the embedded pair as files (under a minute), checked as a GTA5 folder
  udalib data synthcity --out data/synthcity
  udalib data check data/synthcity/source --dataset gta5
  # records of methods x seeds in results/quick/
  udalib reproduce --preset quick --methods source_only --seeds 0 1
"""


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="source_only", help="method / variant name (see `udalib train --list`)")
    p.add_argument(
        "--preset",
        default="auto",
        choices=["auto", "quick", "paper"],
        help="auto (default): paper on a CUDA machine with the datasets configured (UDABOOK_GTA5, "
        "UDABOOK_CITYSCAPES, ...), quick otherwise; quick: small model on SynthCity, CPU; paper: ResNet-101 at "
        "full resolution, CUDA",
    )
    p.add_argument("--dataset", default=None, help="synthcity | gta5 | synthia (default: preset's)")
    p.add_argument("--data-root", default=None, help="source dataset folder (SynthCity: folder with source/ target/)")
    p.add_argument("--target-root", default=None, help="Cityscapes folder (leftImg8bit/, gtFine/)")
    p.add_argument("--iters", type=int, default=None, help="iterations to train (default: preset's)")
    p.add_argument("--backbone", default=None, help="small | resnet101 | vgg16")
    p.add_argument(
        "--pretrained",
        default=None,
        help="initial weights: imagenet (resnet101, vgg16; from the torch hub cache) | procedural (small: the "
        "shipped backbone pretrained on procedural images) | a checkpoint file (default: the preset's)",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out-dir", default=None, help="run folder (default runs/<preset>/<method>/seed<N>)")


def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, help="source folder, if it moved since the checkpoint was trained")
    p.add_argument("--target-root", default=None, help="Cityscapes folder, if it moved since training")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="udalib", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a method and print its target-val per-class IoU and mIoU")
    _add_run_args(p)
    p.add_argument("--resume", default=None, help="checkpoint file, or 'auto' for the latest in --out-dir")
    p.add_argument(
        "--confirm-long-run",
        action="store_true",
        help="start a run estimated to take more than an hour (on a GPU an explicit --iters also confirms)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an --out-dir that holds a run (the old "
        "run is moved aside to <out-dir>.previous-<time>, never deleted)",
    )
    p.add_argument("--checkpoint-every", type=int, default=None, help="iterations between checkpoints")
    p.add_argument("--results", action="store_true", help="also add the record to results/<preset>/<method>.json")
    p.add_argument(
        "--replace",
        action="store_true",
        help="with --results: replace a record of the same seed measured on other (or unknown) data",
    )
    p.add_argument("--list", action="store_true", help="list the methods and exit")

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on target val, or score a folder of PNGs")
    _add_checkpoint_args(p)
    p.add_argument(
        "--checkpoint",
        help="udalib checkpoint to evaluate (it names its method, model and data), or a run folder: its last one",
    )
    p.add_argument(
        "--ensemble",
        nargs=2,
        metavar=("CHECKPOINT", "WEIGHT"),
        action="append",
        default=[],
        help="add another model's upsampled logits with this weight (ADVENT's 0.5/0.5 ensemble)",
    )
    p.add_argument("--pred-dir", help="folder of predicted train-id PNGs (<city>/<stem>_leftImg8bit.png)")
    p.add_argument("--gt-dir", help="ground-truth folder (gtFine/val) matching --pred-dir")
    p.add_argument("--protocol", default="cityscapes19", help="cityscapes19 | synthia16 | crosscity13")
    p.add_argument("--json", help="write the result as JSON here")

    p = sub.add_parser("data", help="make or check datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("synthcity", help="generate the embedded SynthCity pair (GTA5 + Cityscapes layouts)")
    q.add_argument("--out", required=True, help="output folder (gets source/ and target/)")
    q.add_argument("--size", nargs=2, type=int, default=[128, 256], metavar=("H", "W"))
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--counts", nargs=3, type=int, default=[2000, 500, 200], metavar=("SOURCE", "TARGET_TRAIN", "TARGET_VAL")
    )
    q.add_argument(
        "--shift",
        nargs="+",
        default=[],
        metavar="KNOB=STRENGTH",
        help=f"strength of shift knobs ({', '.join(SHIFT_KNOBS)}; 0 off, 1 default, up to 2), e.g. texture=0; "
        "'only=KNOB' switches every other knob off",
    )
    q.add_argument("--workers", type=int, default=None)
    q.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    q = dsub.add_parser("check", help="report pairs, size mismatches, unknown ids and class frequencies")
    q.add_argument("root")
    q.add_argument("--dataset", required=True, choices=["gta5", "cityscapes", "synthia", "crosscity", "folder"])
    q.add_argument("--split", default=None, help="Cityscapes: train | val (default: both)")
    q.add_argument("--city", default=None, help="Cross-City: Rio | Rome | Taipei | Tokyo")
    q.add_argument(
        "--decode", action="store_true", help="decode every image's pixels (default: verify PNG chunks, checksums)"
    )
    q.add_argument("--id-map", default=None, help="folder: JSON {classes: [...], id_map: {raw: train}}")

    p = sub.add_parser("pseudo-label", help="write class-wise-thresholded pseudo-labels for target train")
    _add_checkpoint_args(p)
    p.add_argument(
        "--checkpoint", required=True, help="udalib checkpoint (it names its model and data), or a run folder"
    )
    p.add_argument("--out", required=True, help="folder for <city>/<stem>_pseudo_trainIds.png")
    p.add_argument("--cap", type=float, default=0.9, help="upper bound of the class-wise thresholds")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("reproduce", help="run methods × seeds and write results/<preset>/<method>.json")
    p.add_argument("--preset", default="quick", choices=["quick", "paper"])
    p.add_argument("--methods", nargs="+", default=None, help="default: every method")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--results-root", default=None, help="default: the repository's results/")
    p.add_argument("--data-root", default=None)
    p.add_argument("--target-root", default=None)
    p.add_argument("--replace", action="store_true", help="replace records measured on other (or unknown) data")

    p = sub.add_parser(
        "pretrain", help="pretrain the small backbone on procedural shapes and textures (the quick ImageNet stand-in)"
    )
    p.add_argument("--out", required=True, help="weights file (.pt); its recipe and SHA-256 go beside it as .json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=None, help="iterations (default: the recipe's, about 30 min on a core)")
    p.add_argument("--batch", type=int, default=None, help="images per iteration (default: the recipe's)")
    p.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"), help="image size (default 64 128)")
    p.add_argument("--held-out", type=int, default=None, help="held-out images scored at the end (default 512)")

    p = sub.add_parser(
        "clean", help="list the old runs kept aside (<run>.previous-<time>) with their sizes; --remove deletes them"
    )
    p.add_argument("roots", nargs="*", default=["runs"], help="folders to look in (default: runs)")
    p.add_argument("--remove", action="store_true", help="delete the folders listed (each one is named)")
    return parser


#: The run options of `_add_run_args` that `presets.resolve` takes by the same name.
RUN_OPTIONS = ("dataset", "data_root", "target_root", "iters", "backbone", "pretrained", "seed", "device", "out_dir")


def _config(args, **extra):
    from .preset_choice import resolve_run

    return resolve_run(args.method, args.preset, **{k: getattr(args, k) for k in RUN_OPTIONS}, **extra)


def _load_checkpoint(args, path: str):
    """(model on the device, the run config stored in the checkpoint with the data roots given on the CLI); `path`
    is a checkpoint file or a run folder (its last checkpoint)."""
    import dataclasses
    from pathlib import Path

    from .config import resolve_device
    from .models.trained import load_trained_with_config
    from .run_folder import folder_checkpoints

    if Path(path).is_dir():
        found = folder_checkpoints(path)
        if not found:
            raise UserError(f"--checkpoint {path}: the folder holds no checkpoint_*.pt (a run folder's checkpoints)")
        path = str(found[-1])
    device = resolve_device(args.device)
    model, cfg = load_trained_with_config(path, device)
    moved = {k: v for k, v in dict(source_root=args.data_root, target_root=args.target_root).items() if v}
    if cfg.data.target == "synthcity" and args.data_root:  # one SynthCity folder holds both domains
        moved["target_root"] = args.data_root
    return model, dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **moved))


def cmd_train(args, argv: list[str] | None = None) -> int:
    from . import methods, results, stages

    if args.list:
        others = {n: e for n, e in results.CATALOGUE.items() if n not in methods.REGISTRY}
        width = max(map(len, [*methods.REGISTRY, *others]))
        print("\n".join(f"{name:{width}}  {v.description}" for name, v in methods.REGISTRY.items()))
        print("\ncontrols and ablations (made by `udalib reproduce --methods NAME`, not by train):")
        print("\n".join(f"{name:{width}}  {e.description}" for name, e in others.items()))
        return 0
    if args.method in results.CATALOGUE and args.method not in methods.REGISTRY:  # a control or an ablation
        raise ValueError(
            f"{args.method!r} is a result made from other runs, not a method to train: "
            f"`udalib reproduce --methods {args.method}` makes it (`udalib train --list` lists both)"
        )
    cfg = _config(
        args, resume=args.resume, checkpoint_every=args.checkpoint_every, confirm_long_run=args.confirm_long_run
    )
    if args.overwrite:
        import dataclasses

        cfg = dataclasses.replace(cfg, overwrite=True)
    from .run_folder import RunFolder
    from .train import RunInterrupted

    continuing = f"  udalib {_continuing(sys.argv[1:] if argv is None else argv)}"
    try:
        res = stages.run(cfg)
    except RunInterrupted as err:
        print(f"udalib train: {err}", file=sys.stderr)
        if err.checkpoint.parent == cfg.final_checkpoint.parent:  # this run, not a cached stage it starts from
            print(continuing, file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:  # before the first iteration ended, or a second Ctrl-C: what is on disk is kept
        kept = RunFolder(cfg).checkpoints()
        if not kept:
            print(f"udalib train: interrupted; {cfg.out_dir} holds no checkpoint yet: start again", file=sys.stderr)
        else:
            print(f"udalib train: interrupted; kept {kept[-1]}; continue the run with\n{continuing}", file=sys.stderr)
        return 130
    print(res.final.table())
    print(f"last checkpoint: {cfg.final_checkpoint}; metrics: {res.out_dir / 'metrics.json'}")
    if res.best is not None:
        print(f"best on target val (oracle selection): {res.best[1].main_miou:.1f} at iteration {res.best[0]}")
    if args.results:
        metrics = json.loads((res.out_dir / "metrics.json").read_text())
        record = results.record_from_metrics(metrics, cfg)
        print(f"recorded in {results.append_record(record, replace=args.replace)}")
    print(next_steps(cfg))
    return 0


def _continuing(argv: list[str]) -> str:
    """The `udalib train` command line `argv` made to continue its run: ``--resume auto``, no ``--overwrite``."""
    import shlex

    kept, skip = [], False
    for arg in argv:
        if skip or arg == "--overwrite" or arg.startswith("--resume="):
            skip = False
            continue
        skip = arg == "--resume"
        if not skip:
            kept.append(arg)
    return shlex.join([*kept, "--resume", "auto"])


def next_steps(cfg) -> str:
    """What to try after a run: the other baseline, a chapter, scoring the run folder just written."""
    other, why = ("source_only", "the lower bound") if cfg.method == "oracle" else ("oracle", "the upper bound")
    steps = [
        (f"udalib train --method {other} --preset {cfg.preset}", f"{why}, on the same data"),
        ("papermill notebooks/adaptsegnet.ipynb adaptsegnet.ipynb", "a chapter: the first adaptation method"),
        (f"udalib evaluate --checkpoint {cfg.out_dir}", "score this run's last checkpoint again"),
    ]
    width = max(len(command) for command, _ in steps)
    return "next:\n" + "\n".join(f"  {command:{width}}  # {why}" for command, why in steps)


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate, score_folders
    from .files import write_json

    if args.pred_dir:
        if not args.gt_dir:
            raise SystemExit("--pred-dir needs --gt-dir")
        res = score_folders(args.pred_dir, args.gt_dir, args.protocol)
    else:
        if not args.checkpoint:
            raise SystemExit("give --checkpoint (a udalib checkpoint) or --pred-dir/--gt-dir")
        from .data.domains import build_domains
        from .data.labels import get_protocol

        model, cfg = _load_checkpoint(args, args.checkpoint)
        others = [(_load_checkpoint(args, p)[0], float(w)) for p, w in args.ensemble]
        res = evaluate(
            model,
            build_domains(cfg).target_val_loader(),
            get_protocol(cfg.data.protocol),
            device=next(model.parameters()).device,
            ensemble=others,
        )
    print(res.table())
    if args.json:
        write_json(args.json, res.to_json())
    return 0


def cmd_data(args) -> int:
    if args.data_command == "synthcity":
        from .data import synthcity

        spec = synthcity.SynthCitySpec(
            shift=synthcity.parse_shift(args.shift),
            seed=args.seed,
            height=args.size[0],
            width=args.size[1],
            n_source=args.counts[0],
            n_target_train=args.counts[1],
            n_target_val=args.counts[2],
        )
        root = synthcity.generate(args.out, spec, workers=args.workers, overwrite=args.overwrite)
        print(f"SynthCity written to {root}: source/ (GTA5 layout), target/ (Cityscapes layout)")
        return 0
    from .data.check import check_dataset, format_report

    report = check_dataset(
        args.root, args.dataset, split=args.split, city=args.city, id_map=args.id_map, decode_images=args.decode
    )
    print(format_report(report))
    return 0 if report.ok else 1


def cmd_pseudo_label(args) -> int:
    from .data.domains import build_domains, target_label_size
    from .data.labels import get_protocol
    from .methods import get as get_method
    from .pseudo_labels import THRESHOLDS_FILE, generate_pseudo_labels

    model, cfg = _load_checkpoint(args, args.checkpoint)
    stats = generate_pseudo_labels(
        model,
        build_domains(cfg).pseudo_label_loader(),
        args.out,
        num_classes=get_protocol(cfg.data.protocol).num_classes,
        label_size=target_label_size(cfg),
        cap=args.cap,
        device=next(model.parameters()).device,
        overwrite=args.overwrite,
        order=get_method(cfg.method).cls.pseudo_label_order,  # BAFFT's model: its released order
    )
    protocol = get_protocol(cfg.data.protocol)
    for name, threshold, kept in zip(protocol.classes, stats["thresholds"].tolist(), stats["kept_fraction"].tolist()):
        print(f"{name:<15} threshold {threshold:.3f}  kept {100 * kept:5.1f}% of its predicted pixels")
    print(
        f"{stats['num_images']} pseudo-labels in {stats['out_dir']}, {100 * stats['kept_fraction_all']:.1f}% of "
        f"the pixels labelled; thresholds and counts in {stats['out_dir'] / THRESHOLDS_FILE}"
    )
    return 0


def cmd_clean(args) -> int:
    import shutil

    from .run_folder import kept_aside

    found = [(path, size) for root in args.roots for path, size in kept_aside(root)]
    for path, size in found:
        if args.remove and path.is_dir():
            shutil.rmtree(path)
        elif args.remove:
            path.unlink()
        print(f"{'removed' if args.remove else 'kept aside'}  {size / 2**20:8.1f} MB  {path}")
    total = sum(size for _, size in found) / 2**20
    if not found:
        print(f"no old runs kept aside in {', '.join(args.roots)}")
    elif args.remove:
        print(f"{len(found)} old run(s) removed, {total:.1f} MB freed")
    else:
        print(f"{len(found)} old run(s), {total:.1f} MB; `udalib clean --remove` deletes them")
    return 0


def cmd_pretrain(args) -> int:
    import dataclasses

    from .pretrain import PretrainRecipe, pretrain

    recipe = PretrainRecipe(seed=args.seed)
    given = dict(iters=args.iters, batch=args.batch, held_out_images=args.held_out)
    task = recipe.task if args.size is None else dataclasses.replace(recipe.task, size=tuple(args.size))
    recipe = dataclasses.replace(recipe, task=task, **{k: v for k, v in given.items() if v is not None})
    pretrain(recipe, args.out)
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    reproduce(
        args.preset,
        methods=args.methods,
        seeds=args.seeds,
        results_root=args.results_root,
        data_root=args.data_root,
        target_root=args.target_root,
        replace=args.replace,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "train": lambda a: cmd_train(a, argv),
        "evaluate": cmd_evaluate,
        "data": cmd_data,
        "pseudo-label": cmd_pseudo_label,
        "reproduce": cmd_reproduce,
        "pretrain": cmd_pretrain,
        "clean": cmd_clean,
    }[args.command]
    try:
        return handler(args)
    except UserError as err:  # a refusal: its message is the whole story, no traceback
        print(f"udalib {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except (ValueError, OSError, RuntimeError) as err:
        print(f"udalib {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Mutation check: one-line breakages of core behaviour, each of which some test must catch.

    python tests/mutation_check.py [--report tests/mutation_report.md] [--only NAME ...]

The working tree (tracked and untracked files git does not ignore) is copied to a temporary folder once; each
mutation replaces one line of a library file in that copy, runs its targeted tests there with ``PYTHONPATH``
pointing at the copy (checked: ``udalib.__file__`` must lie in it), requires a test failure, and puts the line
back. The unmutated copy must pass the same tests first, so that a failure is the mutation's doing. The checkout
itself is never modified. Exits 1 if any mutation survives or any baseline fails.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # library file, relative to the repository root
    old: str  # text that occurs exactly once in it
    new: str  # its replacement (the broken behaviour; one line changes)
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions


MUTATIONS = (
    Mutation(
        "poly LR not applied",
        "udalib/train.py",
        'g["lr"] = g["initial_lr"] * factor',
        'g["lr"] = g["initial_lr"]',
        ("tests/test_train.py", "-k", "poly"),
    ),
    Mutation(
        "poly exponent 1 instead of 0.9",
        "udalib/train.py",
        "return (1.0 - min(step, horizon) / horizon) ** power",
        "return 1.0 - min(step, horizon) / horizon",
        ("tests/test_train.py", "-k", "poly"),
    ),
    Mutation(
        "discriminators never stepped",
        "udalib/train.py",
        "            for o in optimizers:\n                scaler.step(o)",
        "            for o in optimizers[:1]:\n                scaler.step(o)",
        ("tests/test_train.py", "-k", "poly"),
    ),
    Mutation(
        "resume does not restore the torch RNG",
        "udalib/train.py",
        'torch.set_rng_state(rng["torch"])',
        "pass",
        ("tests/test_train.py", "-k", "resume or resumed"),
    ),
    Mutation(
        "AdaBN without reset_running_stats",
        "udalib/adabn.py",
        "bn.reset_running_stats()",
        "pass",
        ("tests/test_adabn.py",),
    ),
    Mutation(
        "FeatureBank.ready one write early",
        "udalib/losses/feature_banks.py",
        "return self.pointer > self.slots",
        "return self.pointer >= self.slots",
        ("tests/test_feature_bank.py", "tests/test_losses_bafft.py"),
    ),
    Mutation(
        "global-local ignores the source void mask",
        "udalib/methods/globallocal.py",
        "self.local.discriminator_step(local_s, local_t, backward, source_mask=mask)",
        "self.local.discriminator_step(local_s, local_t, backward, source_mask=None)",
        ("tests/test_methods.py", "-k", "void"),
    ),
    Mutation(
        "SDCA class statistics: between-batch variance term dropped",
        "udalib/losses/contrastive.py",
        "self.var.copy_((1.0 - w) * self.var + w * batch_var + w * (1.0 - w) * delta**2)",
        "self.var.copy_((1.0 - w) * self.var + w * batch_var)",
        ("tests/test_losses_contrastive.py", "tests/test_method_sdca.py"),
    ),
    Mutation(
        "SDCA bound: covariance term dropped",
        "udalib/losses/contrastive.py",
        "bound_logits = mean_term + var_term  # (N', K)",
        "bound_logits = mean_term  # (N', K)",
        ("tests/test_losses_contrastive.py", "tests/test_method_sdca.py"),
    ),
    Mutation(
        "SDCA target terms zeroed",
        "udalib/methods/sdca.py",
        "cfg.lambda_feat * (feat_src + feat_tgt) + cfg.lambda_out * (out_src + out_tgt)",
        "cfg.lambda_feat * feat_src + cfg.lambda_out * out_src",
        ("tests/test_method_sdca.py",),
    ),
    Mutation(
        "self-information not normalised by log2(C)",
        "udalib/losses/entropy.py",
        "return -p * torch.log2(p + _EPS) / math.log2(num_classes)",
        "return -p * torch.log2(p + _EPS)",
        ("tests/test_losses_entropy.py",),
    ),
    Mutation(
        "MinEnt not normalised by log(C)",
        "udalib/losses/entropy.py",
        "ent = -(log_p.exp() * log_p).sum(dim=1) / math.log(num_classes)",
        "ent = -(log_p.exp() * log_p).sum(dim=1)",
        ("tests/test_losses_entropy.py",),
    ),
    Mutation(
        "MaxSquare sign flipped",
        "udalib/losses/maxsquare.py",
        "return -prob.float().pow(2).mean() / 2",
        "return prob.float().pow(2).mean() / 2",
        ("tests/test_losses_clustering.py",),
    ),
    Mutation(
        "mIoU: a void prediction is not counted as a miss",
        "udalib/evaluate.py",
        "self.void_pred += torch.bincount(target[valid & ~classed].long(), minlength=k)",
        "pass",
        ("tests/test_evaluate.py",),
    ),
    Mutation(
        "generator step trains the discriminators",
        "udalib/methods/output_alignment.py",
        "set_requires_grad(self.nets, False)",
        "set_requires_grad(self.nets, True)",
        ("tests/test_methods.py", "-k", "not_reach"),
    ),
    Mutation(
        "discriminator step on maps that are not detached",
        "udalib/methods/output_alignment.py",
        "d_s, d_t = net(source_maps[lvl].detach()), net(target_maps[lvl].detach())",
        "d_s, d_t = net(source_maps[lvl]), net(target_maps[lvl])",
        ("tests/test_methods.py", "-k", "not_reach"),
    ),
)


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked plus untracked, not ignored), without touching the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_tests(tree: Path, tests: tuple[str, ...], env: dict[str, str]) -> tuple[int, float, str]:
    """pytest's exit status on `tests` in `tree`, its wall time and the test that failed (else its last line)."""
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "", *tests],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    failed = [x.split(" - ")[0].removeprefix("FAILED ") for x in lines if x.startswith("FAILED ")]
    return proc.returncode, time.time() - t0, failed[0] if failed else (lines[-1] if lines else proc.stderr[-200:])


def check_import(tree: Path, env: dict[str, str]) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import udalib; print(udalib.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"udalib imports from {where}, not from the copy {tree}: the check would test the checkout")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, help="write a Markdown table of the results here")
    ap.add_argument("--only", nargs="*", help="run only the mutations whose names contain one of these")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(s in m.name for s in args.only)]
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="udabook-mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        env["UDABOOK_CACHE"] = str(tree / ".cache")  # the tests' own fixtures make their tiny sets here
        check_import(tree, env)
        baselines: dict[tuple[str, ...], int] = {}
        for m in chosen:
            path = tree / m.path
            original = path.read_text()
            if original.count(m.old) != 1:
                raise SystemExit(f"{m.name}: {m.old!r} occurs {original.count(m.old)} times in {m.path}, not once")
            if m.tests not in baselines:
                baselines[m.tests], _, last = run_tests(tree, m.tests, env)
                if baselines[m.tests] != 0:
                    print(f"baseline FAILS for {' '.join(m.tests)}: {last}")
                    ok = False
            path.write_text(original.replace(m.old, m.new))
            try:
                rc, wall, last = run_tests(tree, m.tests, env)
            finally:
                path.write_text(original)
            caught = rc == 1 and baselines[m.tests] == 0  # 1: tests failed (2-5: interrupted, usage, none ran)
            ok &= caught
            rows.append((m, caught, wall, last))
            print(f"{'caught  ' if caught else 'SURVIVED'} {m.name} ({wall:.0f} s): {last}", flush=True)
    caught_n = sum(c for _, c, _, _ in rows)
    summary = f"{caught_n} of {len(rows)} mutations caught"
    print(summary)
    if args.report:
        args.report.write_text(report(rows, summary))
    return 0 if ok else 1


def report(rows, summary: str) -> str:
    lines = [
        "# Mutation check",
        "",
        "Made by `python tests/mutation_check.py --report tests/mutation_report.md` (see its docstring): each row is",
        "one line of the library broken in a copy of the tree, the tests run on it, and whether one of them failed.",
        "",
        "| mutation | file | tests run | caught by | time |",
        "|---|---|---|---|---|",
    ]
    for m, caught, wall, by in rows:
        verdict = f"`{by}`" if caught else "**not caught**"
        lines.append(f"| {m.name} | `{m.path}` | `{shlex.join(m.tests)}` | {verdict} | {wall:.0f} s |")
    return "\n".join([*lines, "", summary + ".", ""])


if __name__ == "__main__":
    sys.exit(main())

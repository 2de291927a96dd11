"""Broken checkpoint files: one line that names the file and says what is wrong, never torch's advice to unpickle
unsafely, and exit code 2 on the command line."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from udalib import cli
from udalib.models import SmallDeepLab
from udalib.models.checkpoints import CheckpointError, load_checkpoint_into, read_checkpoint
from udalib.models.trained import TRAINER_KEYS, load_trained_with_config, load_weights

K = 19


class WritesAFile:
    """Unpickling this object would create `target` (what a malicious checkpoint could do)."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A trainer-style checkpoint of a small model (the weights and the stored config)."""
    from udalib.presets import resolve

    path = tmp_path / "checkpoint_0000004.pt"
    cfg = resolve("source_only", "quick", out_dir=str(tmp_path))
    torch.save({"model": SmallDeepLab(K).state_dict(), "config": json.dumps(cfg.to_dict()), "num_classes": K}, path)
    return path


def cut(path, fraction: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def test_an_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.touch()
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="empty.pt"):
        load_weights(SmallDeepLab(K), path)


@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_a_truncated_checkpoint(tiny_checkpoint, fraction):
    size = len(cut(tiny_checkpoint, fraction).read_bytes())
    for load in (read_checkpoint, load_trained_with_config, lambda p: load_weights(SmallDeepLab(K), p)):
        with pytest.raises(CheckpointError) as err:
            load(tiny_checkpoint)
        message = str(err.value)
        assert message.startswith(f"checkpoint {tiny_checkpoint} is corrupt or not a udalib checkpoint ({size:,} bytes")
        assert "truncated download or an interrupted save" in message and "\n" not in message


def test_a_text_file_and_a_git_lfs_pointer(tmp_path):
    text = tmp_path / "model.pt"
    text.write_text("<html><body>404 Not Found</body></html>\n")
    with pytest.raises(CheckpointError, match=r"model\.pt is a text file, not a checkpoint \(it starts '<html>"):
        read_checkpoint(text)
    lfs = tmp_path / "lfs.pt"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n")
    with pytest.raises(
        CheckpointError, match=r"lfs\.pt is a Git LFS pointer, not the file: fetch it with `git lfs pull`"
    ):
        read_checkpoint(lfs)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_malicious_pickle_is_refused_without_running_it(tmp_path, writer):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"model": SmallDeepLab(K).state_dict(), "x": WritesAFile(str(target))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    for load in (read_checkpoint, load_trained_with_config, lambda p: load_checkpoint_into(SmallDeepLab(K), p)):
        with pytest.raises(CheckpointError) as err:
            load(path)
        message = str(err.value)
        assert message.startswith(f"refusing to load {path}: it ")
        assert "could run arbitrary code" in message and "not a udalib checkpoint" in message
        assert "weights_only" not in message and "add_safe_globals" not in message and "\n" not in message
        assert err.value.__suppress_context__  # nor in a traceback: torch's text is not chained
    assert not target.exists()
    if writer == "torch.save":
        assert "(io.open)" in message


def test_another_kind_of_file_is_named(tmp_path, tiny_checkpoint):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(
        CheckpointError, match=f"{path} is not a checkpoint written by udalib's trainer: it holds a Tensor"
    ):
        load_trained_with_config(path)
    with pytest.raises(CheckpointError, match=f"{path}: not a state dict: the checkpoint holds a Tensor"):
        load_weights(SmallDeepLab(K), path)
    with pytest.raises(CheckpointError, match="it holds a dict without step, optimizer"):
        read_checkpoint(tiny_checkpoint, require=TRAINER_KEYS)
    with pytest.raises(CheckpointError, match=f"{tiny_checkpoint}: checkpoint is a small, model is resnet14"):
        from udalib.models import DeepLabV2ResNet101

        load_weights(DeepLabV2ResNet101(K, blocks=(1, 1, 1, 1)), tiny_checkpoint)
    state = torch.load(tiny_checkpoint, weights_only=True)
    torch.save({**state, "config": "{not json"}, tiny_checkpoint)
    with pytest.raises(CheckpointError, match="its stored run config cannot be read"):
        load_trained_with_config(tiny_checkpoint)


def test_the_command_line_says_one_line_and_exits_2(tiny_checkpoint, capsys):
    assert issubclass(CheckpointError, ValueError)
    cut(tiny_checkpoint)
    assert cli.main(["evaluate", "--checkpoint", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"udalib evaluate: error: checkpoint {tiny_checkpoint} is corrupt")
    assert err.count("\n") == 1 and "Traceback" not in err

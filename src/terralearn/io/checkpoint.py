"""Run checkpoints in a run folder: safetensors + JSON, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from terralearn.io.atomic import atomic_file, write_text_atomic

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


def save_checkpoint(run_dir: Path, trainer, epoch: int, seconds: float, baseline: dict | None) -> None:
    """Model, optimizer and scheduler state after ``epoch``, plus the best weights so far.

    The tensors file is written first and the JSON (which names the epoch) last, each
    atomically, so a kill at any moment leaves the previous complete checkpoint readable.
    """
    run_dir = Path(run_dir)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in trainer.model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in (trainer.best_state or {}).items():
        tensors[f"best.{k}"] = v.contiguous()
    opt = trainer.optimizer.state_dict()
    for pid, state in opt["state"].items():
        for name, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt.{pid}.{name}"] = t.detach().cpu().contiguous()
    tensors["rng"] = torch.get_rng_state()
    with atomic_file(run_dir / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp))
    state = {
        "epoch": epoch,
        "seconds": seconds,
        "learning_rate": trainer.learning_rate,
        "history": trainer.history,
        "best_score": trainer.best_score,
        "best_epoch": trainer.best_epoch,
        "weights": trainer.weights_used,
        "baseline": baseline,
        "param_groups": opt["param_groups"],
        "scheduler": {k: v for k, v in trainer.scheduler.state_dict().items() if k != "_get_lr_called_within_step"},
    }
    write_text_atomic(run_dir / CHECKPOINT_STATE, json.dumps(state, default=float))


def load_checkpoint(run_dir: Path) -> dict | None:
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_STATE).exists() or not (run_dir / CHECKPOINT).exists():
        return None
    state = json.loads((run_dir / CHECKPOINT_STATE).read_text())
    tensors = load_file(str(run_dir / CHECKPOINT))
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")}
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    torch.set_rng_state(tensors["rng"])
    state.update(
        model=model,
        best_model=best or None,
        optimizer={"state": opt_state, "param_groups": state["param_groups"]},
    )
    return state

"""The paper's pruning workflow in training: fine-tuning from a checkpoint
(``train.init_from``), the learnable thresholds' own learning rate (``train.vth_lr``), the
operations budget (``pruning.target_kept``, ramped over ``pruning.budget_ramp_epochs``) and
the recovery phase (``train.recovery_epochs``: the last epochs, masks frozen, no penalty).
"""
from __future__ import annotations

import torch

from project_config import UserError

from .pruning import freeze_masks, mask_parameters

# Keys a model fine-tuned with pruning may have that its (unpruned) source checkpoint lacks.
_NEW_IN_PRUNING = (".gate.", ".spatial.")


def load_initial_weights(model, state_dict: dict, path) -> dict:
    """Copy ``state_dict`` (a checkpoint's) into ``model``; the gates and spatial
    thresholds a pruned model adds keep their initial values. Returns what was copied and
    what was new; a key the model does not have or a shape that differs is an error."""
    own = model.state_dict()
    unknown = [k for k in state_dict if k not in own]
    if unknown:
        raise UserError(f"{path}: train.init_from: the checkpoint has {unknown[0]!r}, which "
                        "this config's model does not (different architecture?)")
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise UserError(f"{path}: train.init_from: {k} is {list(v.shape)} in the "
                            f"checkpoint, {list(own[k].shape)} in this config's model")
    missing = [k for k in own if k not in state_dict]
    bad = [k for k in missing if not any(s in k for s in _NEW_IN_PRUNING)]
    if bad:
        raise UserError(f"{path}: train.init_from: the checkpoint lacks {bad[0]!r}")
    model.load_state_dict(state_dict, strict=False)
    return {"copied": len(state_dict), "new": missing}


def make_optimizer(model, tc: dict) -> torch.optim.Adam:
    """Adam at ``train.lr``; the learnable thresholds in a group of their own at
    ``train.vth_lr`` and the channel gates at ``train.mask_lr``, each when set (> 0).

    Adam moves a parameter by about its lr per step whatever the gradient's size, so a
    short fine-tuning at a small lr cannot move a threshold or a gate bias far: the
    schedule, not the loss, would set their values."""
    groups = []
    taken = set()
    for key, params in (("vth_lr", [p for n, p in model.named_parameters()
                                    if n.endswith("vth")]),
                        ("mask_lr", mask_parameters(model))):
        if tc.get(key, 0.0) > 0.0 and params:
            groups.append({"params": params, "lr": tc[key]})
            taken |= {id(p) for p in params}
    if not groups:
        return torch.optim.Adam(model.parameters(), lr=tc["lr"])
    rest = [p for p in model.parameters() if id(p) not in taken]
    return torch.optim.Adam([{"params": rest, "lr": tc["lr"]}] + groups, lr=tc["lr"])


def in_recovery(tc: dict, epoch: int, epochs: int) -> bool:
    """True in the last ``train.recovery_epochs`` epochs (1-based ``epoch`` of ``epochs``)."""
    return epoch > epochs - tc.get("recovery_epochs", 0)


def budget_target(pruning: dict, progress: float) -> float:
    """The kept-operations target at ``progress`` epochs into the run (fractional): ramps
    linearly from 1 to ``target_kept`` over ``budget_ramp_epochs``, then holds."""
    target, ramp = pruning["target_kept"], pruning.get("budget_ramp_epochs", 0)
    if ramp <= 0 or progress >= ramp:
        return target
    return 1.0 - (1.0 - target) * progress / ramp


def pruning_penalty(model, pruning: dict, progress: float, recovery: bool):
    """The loss term that sets the sparsity, or None: with a budget (``target_kept`` > 0),
    ``gate_penalty * relu(kept fraction of the operations - target)``; without, the
    untargeted ``gate_penalty * mean open probability``; nothing in the recovery phase."""
    weight = pruning["gate_penalty"]
    if recovery or not weight or not hasattr(model, "pruning_loss"):
        return None
    if pruning.get("target_kept", 0.0) > 0.0:
        excess = model.ops_kept_fraction() - budget_target(pruning, progress)
        return weight * torch.relu(excess)
    return weight * model.pruning_loss()


def set_recovery(model, recovery: bool):
    """Freeze (or unfreeze) the masks for this epoch: spatial thresholds stop moving."""
    freeze_masks(model, recovery)


def drop_mask_gradients(model):
    """In the recovery phase, before the optimizer step: the gates get no update (Adam
    skips parameters without a gradient)."""
    for p in mask_parameters(model):
        p.grad = None

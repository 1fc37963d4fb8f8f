#!/usr/bin/env python3
"""Write the PyTorch fixtures of the LR schedules and of SGD, replayed by
Tests/RNNCoreTests/ScheduleAndSGDTests.swift, to Tests/RNNCoreTests/Fixtures/schedules.json.

schedules: one case per schedule config (keys as Swift's LRScheduleConfig), with the base lr,
  the run's total optimizer steps, the steps per epoch, the validation loss of each epoch (for
  plateau) and "lrs": the learning rate in the optimizer's param group when each optimizer step
  runs, as torch.optim.lr_scheduler sets it:
    constant/step/plateau without warmup: StepLR / ReduceLROnPlateau stepped once per epoch;
    cosine: CosineAnnealingLR(T_max = total - warmup), stepped after every optimizer step,
      behind LinearLR in SequentialLR(milestones=[warmup]) when warmup > 0;
    step/plateau with warmup: LinearLR stepped per optimizer step for the first `warmup` steps
      (its lr is used there), the epoch schedule on its own optimizer stepped per epoch (its lr
      is used after the warmup). PyTorch has no one scheduler mixing the two cadences.
sgd: one case per torch.optim.SGD config (lr, momentum, nesterov, weight_decay, foreach=False):
  the initial parameters (37 values), 4 gradients, the lr of each step (the param group's lr
  changed between steps, as a scheduler does) and the parameters after each step.
Floats are written as JSON numbers (Python's repr: exact doubles; float32 values exactly).

Run: python3 scripts/make_schedule_fixtures.py   (torch only needed to regenerate)
"""
import json
import os
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "RNNCoreTests", "Fixtures", "schedules.json")
START_FACTOR = 1e-8  # LRScheduleConfig.warmupStartFactor


def optimizer(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def epoch_scheduler(opt, c):
    if c["kind"] == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=c["stepSize"], gamma=c["gamma"])
    if c["kind"] == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=c["gamma"], patience=c["patience"],
                                                          threshold=1e-4, threshold_mode="rel", min_lr=c["minLR"], eps=1e-8)
    return None


def lr_sequence(c, base, total, per_epoch, val_losses):
    lrs = []
    warm = c["warmupSteps"]
    if c["kind"] == "cosine":
        opt = optimizer(base)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total - warm), eta_min=c["minLR"])
        sched = cosine
        if warm > 0:
            linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=START_FACTOR, end_factor=1.0, total_iters=warm)
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warm])
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs
    main = optimizer(base)
    sched = epoch_scheduler(main, c)
    warm_opt = optimizer(base)
    linear = None
    if warm > 0:
        linear = torch.optim.lr_scheduler.LinearLR(warm_opt, start_factor=START_FACTOR, end_factor=1.0, total_iters=warm)
    for g in range(total):
        lrs.append(warm_opt.param_groups[0]["lr"] if g < warm else main.param_groups[0]["lr"])
        warm_opt.step()
        main.step()
        if linear is not None:
            linear.step()
        if (g + 1) % per_epoch == 0:
            e = (g + 1) // per_epoch - 1
            if c["kind"] == "step":
                sched.step()
            elif c["kind"] == "plateau":
                sched.step(val_losses[e])
    return lrs


def schedule_cases():
    def cfg(kind, stepSize=10, gamma=0.1, minLR=0.0, patience=10, warmupSteps=0):
        return {"kind": kind, "stepSize": stepSize, "gamma": gamma, "minLR": minLR, "patience": patience,
                "warmupSteps": warmupSteps}
    # Validation losses that fall, stall (within the 1e-4 threshold), fall, then turn up.
    val = [2.0, 1.5, 1.4999, 1.49995, 1.3, 1.31, 1.32, 1.33, 1.29, 1.35, 1.36, 1.37]
    cases = [
        ("constant", cfg("constant"), 0.01, 36, 3),
        ("constant-warmup", cfg("constant", warmupSteps=7), 0.01, 36, 3),
        ("step", cfg("step", stepSize=2, gamma=0.5), 0.1, 36, 3),
        ("step-warmup", cfg("step", stepSize=3, gamma=0.3, warmupSteps=5), 0.02, 36, 3),
        ("cosine", cfg("cosine", minLR=1e-4), 0.05, 40, 4),
        ("cosine-zero-min", cfg("cosine"), 0.003, 25, 5),
        ("cosine-warmup", cfg("cosine", minLR=1e-5, warmupSteps=6), 0.01, 40, 4),
        ("plateau", cfg("plateau", gamma=0.5, patience=1, minLR=0.002), 0.03, 36, 3),
        ("plateau-patience0-warmup", cfg("plateau", gamma=0.2, patience=0, warmupSteps=4), 0.01, 36, 3),
    ]
    out = []
    for name, c, base, total, per_epoch in cases:
        out.append({"name": name, "config": c, "baseLR": base, "totalSteps": total, "stepsPerEpoch": per_epoch,
                    "valLosses": val[: total // per_epoch], "lrs": lr_sequence(c, base, total, per_epoch, val)})
    return out


def sgd_cases():
    out = []
    configs = [
        ("plain", 0.0, False, 0.0),
        ("momentum", 0.9, False, 0.0),
        ("momentum-decay", 0.8, False, 0.01),
        ("nesterov-decay", 0.9, True, 0.05),
    ]
    lrs = [0.1, 0.05, 0.1, 0.02]
    for index, (name, momentum, nesterov, wd) in enumerate(configs):
        g = torch.Generator().manual_seed(100 + index)
        p0 = torch.randn(37, generator=g)
        grads = [torch.randn(37, generator=g) * 2 for _ in lrs]
        p = torch.nn.Parameter(p0.clone())
        opt = torch.optim.SGD([p], lr=lrs[0], momentum=momentum, nesterov=nesterov, weight_decay=wd, foreach=False)
        after = []
        for lr, grad in zip(lrs, grads):
            opt.param_groups[0]["lr"] = lr
            p.grad = grad.clone()
            opt.step()
            after.append([float(v) for v in p.detach()])
        out.append({"name": name, "momentum": momentum, "nesterov": nesterov, "weightDecay": wd, "lrs": lrs,
                    "initial": [float(v) for v in p0], "gradients": [[float(v) for v in x] for x in grads],
                    "after": after})
    return out


def main():
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    data = {"torch": torch.__version__, "warmupStartFactor": START_FACTOR,
            "schedules": schedule_cases(), "sgd": sgd_cases()}
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

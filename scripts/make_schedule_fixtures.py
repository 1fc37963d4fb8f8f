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
models: the tutorial's model (nn.LSTM / nn.GRU + nn.Linear, PyTorch's own seeded init) trained
  5 steps on one batch (cross-entropy on the last step) by SGD or Adam under a scheduler
  (SequentialLR of LinearLR warmup and CosineAnnealingLR, or StepLR per 2 steps): the state_dict
  before, x, targets, the lr of each step and the state_dict after, as flat float lists.
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


def model_cases():
    cases = []
    specs = [
        ("lstm-sgd-nesterov-cosine", "LSTM", {"kind": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True, "weightDecay": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, "cosine"),
        ("gru-sgd-momentum-step", "GRU", {"kind": "sgd", "lr": 0.3, "momentum": 0.7, "nesterov": False, "weightDecay": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, "step"),
        ("lstm-adam-cosine", "LSTM", {"kind": "adam", "lr": 0.02, "momentum": 0.0, "nesterov": False, "weightDecay": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, "cosine"),
    ]
    for index, (name, module, opt_cfg, sched) in enumerate(specs):
        torch.manual_seed(500 + index)
        I, H, O, B, T = 3, 5, 4, 6, 4
        rnn = getattr(torch.nn, module)(I, H, 1, batch_first=True)
        fc = torch.nn.Linear(H, O)
        x = torch.randn(B, T, I)
        y = torch.randint(0, O, (B,))
        before = {"rnn." + k: v.detach().clone() for k, v in rnn.state_dict().items()}
        before.update({"fc." + k: v.detach().clone() for k, v in fc.state_dict().items()})
        params = list(rnn.parameters()) + list(fc.parameters())
        if opt_cfg["kind"] == "sgd":
            opt = torch.optim.SGD(params, lr=opt_cfg["lr"], momentum=opt_cfg["momentum"], nesterov=opt_cfg["nesterov"],
                                  weight_decay=opt_cfg["weightDecay"], foreach=False)
        else:
            opt = torch.optim.Adam(params, lr=opt_cfg["lr"], weight_decay=opt_cfg["weightDecay"], foreach=False)
        steps = 5
        if sched == "cosine":
            schedule = {"kind": "cosine", "stepSize": 10, "gamma": 0.1, "minLR": 0.001, "patience": 10, "warmupSteps": 2}
            linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=START_FACTOR, end_factor=1.0, total_iters=2)
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps - 2, eta_min=0.001)
            scheduler = torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[2])
        else:
            schedule = {"kind": "step", "stepSize": 2, "gamma": 0.5, "minLR": 0.0, "patience": 10, "warmupSteps": 0}
            scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            seq, _ = rnn(x)
            torch.nn.functional.cross_entropy(fc(seq[:, -1, :]), y).backward()
            opt.step()
            scheduler.step()
        after = {"rnn." + k: v for k, v in rnn.state_dict().items()}
        after.update({"fc." + k: v for k, v in fc.state_dict().items()})
        flat = lambda d: {k: [float(v) for v in t.reshape(-1)] for k, t in d.items()}
        cases.append({"name": name, "cell": module.lower(), "inputSize": I, "hiddenSize": H, "outputSize": O, "batch": B, "steps": T,
                    "optimizer": opt_cfg, "schedule": schedule, "scheduleEveryStep": True, "totalSteps": steps,
                    "x": [float(v) for v in x.reshape(-1)], "targets": [int(v) for v in y], "lrs": lrs,
                    "before": flat(before), "after": flat(after)})
    return cases


def main():
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    data = {"torch": torch.__version__, "warmupStartFactor": START_FACTOR,
            "schedules": schedule_cases(), "sgd": sgd_cases(), "models": model_cases()}
    with open(OUT, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""torch_step.py: PyTorch's time for the training step bench/step.c times.

Same models (MLP 784-512-512-10; the CNN of models/cnn.c, its convolutions
without bias as there), same batch, same random-data setup, SGD lr 0.01, same
warmup and median over the same number of steps. Prints one JSON line per
model, with the fields step.c prints.
Run with /usr/bin/python3 (Debian's torch 1.13, CPU)."""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp():
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64 * 7 * 7, 10)

    def forward(self, x):
        x = x.view(-1, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(x, 1))


MODELS = {"mlp": (mlp, 256, 50), "cnn": (CNN, 64, 20)}


def bench(name, args):
    make, batch, steps = MODELS[name]
    batch = args.batch or batch
    steps = args.steps or steps
    torch.manual_seed(args.seed)
    model = make()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(batch, 784)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    loss_first = step().item()
    for _ in range(max(args.warmup, 1) - 1):
        step()
    ms = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    loss_last = step().item()
    print(json.dumps({
        "impl": "torch", "model": name, "batch": batch, "threads": torch.get_num_threads(),
        "mode": "eager", "warmup": max(args.warmup, 1), "steps": steps,
        "median_ms": round(statistics.median(ms), 3), "min_ms": round(min(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3), "loss_first": round(loss_first, 5),
        "loss_last": round(loss_last, 5), "torch": torch.__version__}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS))
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in [args.model] if args.model else ["mlp", "cnn"]:
        bench(name, args)


if __name__ == "__main__":
    main()

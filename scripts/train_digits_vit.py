"""Train the bundled canvas models on 32x32 canvases of sklearn's training digits and write
their weights: `digits_vit` (timm ViT) to src/visionlens/data/digits_vit.pt, or with `--cnn`
`digits_canvas_cnn` (the `digits_cnn` architecture) to src/visionlens/data/digits_canvas_cnn.pt.
Seeded and deterministic (the same seed gives the same weights), CPU, one thread; each epoch
pastes every training digit at fresh random positions (`make_canvases`):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_digits_vit.py          # 40 epochs, about 2 minutes
    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_digits_vit.py --cnn    # 10 epochs, about 1 minute

The held-out accuracy printed is on `heldout_canvases()` (held-out digits), which training
never sees and which is not used to choose anything.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from visionlens.canvas import canvas_accuracy, heldout_canvases, make_canvases
from visionlens.digits import digits_cnn_net, digits_split
from visionlens.digits_vit import digits_vit_net
from visionlens.io import write_atomic

DATA = Path(__file__).resolve().parents[1] / "src" / "visionlens" / "data"


def train(net: nn.Module, epochs: int, lr: float, weight_decay: float, copies: int, seed: int) -> nn.Module:
    """AdamW with a one-cycle schedule on `copies` fresh canvases per training digit per epoch."""
    torch.manual_seed(seed)
    train_idx, _ = digits_split()
    test = heldout_canvases()
    batch = 64
    steps = epochs * ((len(train_idx) * copies + batch - 1) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        # positions differ every epoch (seeds far from the held-out set's seed 0)
        c = make_canvases(train_idx.repeat(copies), seed=10_000 * (seed + 1) + epoch)
        x, y = c.tensor(), torch.from_numpy(c.labels)
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            b = perm[i : i + batch]
            loss = F.cross_entropy(net(x[b]), y[b], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 5 == 4 or epoch == epochs - 1:
            acc = canvas_accuracy(net, test)
            print(
                f"epoch {epoch + 1}: loss {loss.item():.4f}, held-out canvas accuracy {acc:.4f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return net.eval()


def save(net: nn.Module, out: Path) -> None:
    """Write the state_dict atomically."""
    buf = io.BytesIO()
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, buf)
    write_atomic(out, lambda f: f.write(buf.getvalue()))
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn", action="store_true", help="train digits_canvas_cnn instead of digits_vit")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where to write the weights (default: the bundled file)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)  # before the network is built: its initialization draws too
    if args.cnn:
        net = train(digits_cnn_net(), args.epochs or 10, 3e-3, 1e-4, copies=1, seed=args.seed)
        save(net, args.out or DATA / "digits_canvas_cnn.pt")
    else:
        net = train(digits_vit_net(), args.epochs or 40, 2e-3, 0.05, copies=1, seed=args.seed)
        save(net, args.out or DATA / "digits_vit.pt")


if __name__ == "__main__":
    main()

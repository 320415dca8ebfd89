"""Train the bundled `digits_cnn` on the training part of sklearn's digits and write its weights
to src/visionlens/data/digits_cnn.pt. About ten seconds on a CPU:

    .venv/bin/python scripts/train_digits_cnn.py
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F

from visionlens.digits import accuracy, digits_arrays, digits_cnn_net, digits_split, digits_tensor
from visionlens.io import write_atomic
from visionlens.models import Model

OUT = Path(__file__).resolve().parents[1] / "src" / "visionlens" / "data" / "digits_cnn.pt"


def main(epochs: int = 40, seed: int = 0) -> None:
    torch.manual_seed(seed)
    images, labels = digits_arrays()
    train, test = digits_split()
    x, y = digits_tensor(images[train]), torch.from_numpy(labels[train])
    net = digits_cnn_net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * ((len(x) + 63) // 64))
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            b = perm[i : i + 64]
            # shift each digit by up to one pixel: cheap augmentation that helps on 8x8 images
            xb = torch.roll(x[b], shifts=(int(torch.randint(-1, 2, ())), int(torch.randint(-1, 2, ()))), dims=(2, 3))
            loss = F.cross_entropy(net(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 10 == 9 or epoch == epochs - 1:
            acc = accuracy(Model(net.eval(), name="digits_cnn"), test)
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, held-out accuracy {acc:.4f}")
    buf = io.BytesIO()
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, buf)
    write_atomic(OUT, lambda f: f.write(buf.getvalue()))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()

"""`digits_vit`: a tiny vision transformer for digits on 32x32 canvases, bundled so that what
visionlens shows on transformers (Grad-CAM on token layers, attention rollout, per-head
attention) can be checked against a known answer (`visionlens.canvas`: where the digit is).

It is timm's own `VisionTransformer` (4x4 patches, an 8x8 grid, a class token, 4 blocks of 4
heads, width 64), so it behaves exactly like a timm ViT: `num_prefix_tokens`,
`patch_embed.grid_size`, fused attention, the same module names (`blocks.3.norm1`). A digit
covers 2 x 2 of its patches. The weights (data/digits_vit.pt, ~0.6 MB) are made by
`scripts/train_digits_vit.py`, which trains on canvases of `digits_split()`'s training digits;
held-out canvases hold held-out digits.
"""

from __future__ import annotations

from torch import nn

from .canvas import CANVAS_PREPROCESSING, CANVAS_SIZE
from .digits import DIGIT_LABELS, load_bundled_weights
from .models import Model


def digits_vit_net() -> nn.Module:
    """The untrained `digits_vit` network: timm's `VisionTransformer` for 32x32 canvases.

    Returns:
        A `timm.models.vision_transformer.VisionTransformer` (img_size 32, patch 4, width 64,
        depth 4, 4 heads, MLP ratio 2, class token, 10 classes), randomly initialized.

    Example:
        >>> from visionlens.digits_vit import digits_vit_net
        >>> net = digits_vit_net()
        >>> net.num_prefix_tokens, net.patch_embed.grid_size
        (1, (8, 8))
    """
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=CANVAS_SIZE,
        patch_size=4,
        in_chans=3,
        num_classes=10,
        embed_dim=64,
        depth=4,
        num_heads=4,
        mlp_ratio=2.0,
        class_token=True,
        global_pool="token",
    )


def load_digits_vit(weights: bool = True) -> Model:
    """The bundled digits ViT as a `Model` (32-px canvases, labels "0".."9").

    Args:
        weights: load the bundled weights; False leaves it untrained (for training it).

    Returns:
        The `Model`, in eval mode.

    Example:
        >>> from visionlens.canvas import heldout_canvases
        >>> model = vl.load_model("digits_vit")
        >>> model.net(heldout_canvases().subset(slice(0, 2)).tensor()).shape
        torch.Size([2, 10])
    """
    net = digits_vit_net()
    if weights:
        load_bundled_weights(net, "digits_vit.pt")
    return Model(net.eval(), CANVAS_PREPROCESSING, list(DIGIT_LABELS), "digits_vit")

"""What an attribution explains: one scalar per image computed from the model's output.

Every attribution method takes a `target` and turns it into a `BoundTarget` on the clean
output of the images it explains (`bind`): the class chosen for each image, the pixels of a
region, a reference embedding. The bound target then scores any batch made from those images
(noisy copies, interpolation steps, occluded copies) with `take(owners)`, so that "the
predicted class" means the clean image's prediction everywhere, and every method (gradients,
CAMs, occlusion, Integrated Gradients, the faithfulness metrics) explains the same number.

A target is one of:

- None: each image's predicted class (a segmentation model: the class covering most pixels);
- a class index or name, one for every image or a list with one per image (on a segmentation
  model: that class summed over the pixels predicted as it, as `Region` does);
- `Class(c, score="logit" | "softmax" | "sigmoid")`: a class's logit, probability, or sigmoid
  score for multi-label models;
- `Contrast(a, b)`: logit of `a` minus logit of `b` ("tiger cat" rather than "tabby cat");
- `Region(c, mask=None)`: a segmentation output's class-`c` score summed over a mask, or over
  the pixels predicted as `c`;
- `Similarity(reference)`: cosine similarity of the output (an embedding) to a reference
  embedding, for backbones without a classifier;
- any callable taking the model's output and returning one score per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..errors import TargetError

Score = Literal["logit", "softmax", "sigmoid"]
SCORES = ("logit", "softmax", "sigmoid")
ClassSpec = int | str | Sequence[int | str] | torch.Tensor | None


def output_tensor(output: Any) -> torch.Tensor:
    """The tensor a target reads from a model's output: the output itself, the `"out"` entry
    of a dict (torchvision's segmentation models), or the first element of a tuple.

    Args:
        output: what the network returned.

    Returns:
        A tensor, (B, ...).

    Example:
        >>> import torch
        >>> from visionlens.attribution.targets import output_tensor
        >>> output_tensor({"out": torch.zeros(1, 21, 8, 8), "aux": torch.zeros(1, 21, 8, 8)}).shape
        torch.Size([1, 21, 8, 8])
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        if "out" in output:
            return output_tensor(output["out"])
        tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise TargetError(
            f"the model returns a dict with {sorted(output)}: no 'out' entry to explain; "
            "pass a callable target that picks the score"
        )
    if isinstance(output, (tuple, list)) and output:
        return output_tensor(output[0])
    if hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):  # Hugging Face outputs
        return output.logits
    raise TargetError(f"the model returns {type(output).__name__}, not a tensor; pass a callable target")


def _is_map(out: torch.Tensor) -> bool:
    return out.ndim == 4


def _class_list(model: Any, spec: ClassSpec, batch: int, n: int, default: torch.Tensor) -> torch.Tensor:
    """One class index per image, checked against the output's `n` classes."""
    if spec is None:
        return default
    if isinstance(spec, torch.Tensor):
        spec = spec.flatten().tolist()
    if isinstance(spec, (int, str)):
        spec = [spec] * batch
    spec = list(spec)
    if len(spec) != batch:
        raise TargetError(f"{len(spec)} targets for a batch of {batch} images; give one per image")
    return torch.tensor([model.class_index(t, n) for t in spec], device=default.device)


class BoundTarget:
    """A target resolved on the clean output of a batch of B images: scores any batch built
    from those images, `take(owners)` telling which image each row comes from.

    Args:
        scores: a function from the model output to (B,) scores.
        classes: the class index each image's score is about, where there is one (else None).
        label: a short description for captions ("tiger cat", "tiger cat - tabby cat").
        per_image: tensors with one row per image that `take` indexes (indices, masks,
            references), passed to `scores` as keyword arguments.

    Example:
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea")
        >>> bound = vl.attribution.bind(model, x, "tiger cat")
        >>> bound.label, bound(model.net(x)).shape
        ("class 282 'tiger cat'", torch.Size([1]))
    """

    def __init__(
        self,
        scores: Callable[..., torch.Tensor],
        classes: torch.Tensor | None,
        label: str,
        per_image: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self._scores = scores
        self.classes = classes
        self.label = label
        self.per_image = per_image or {}

    def __call__(self, output: Any) -> torch.Tensor:
        """(B,) scores of the model output `output` for the bound images."""
        s = self._scores(output_tensor(output), **self.per_image)
        if not isinstance(s, torch.Tensor):
            s = torch.as_tensor(s)
        return s.reshape(-1)

    def take(self, owners: torch.Tensor | Sequence[int]) -> BoundTarget:
        """The target for a batch whose row i is a copy of image `owners[i]`."""
        idx = torch.as_tensor(owners, dtype=torch.long)
        per = {k: v[idx.to(v.device)] for k, v in self.per_image.items()}
        classes = self.classes[idx.to(self.classes.device)] if self.classes is not None else None
        return BoundTarget(self._scores, classes, self.label, per)

    def to(self, device: torch.device | str) -> BoundTarget:
        """The same target with its per-image tensors on `device`."""
        per = {k: v.to(device) for k, v in self.per_image.items()}
        return BoundTarget(self._scores, self.classes, self.label, per)


def _class_label(model: Any, classes: torch.Tensor) -> str:
    idx = sorted(set(classes.tolist()))
    if len(idx) > 3:
        return f"{len(idx)} classes"
    names = [f"class {i} '{model.short_label(i)}'" if model.labels else f"class {i}" for i in idx]
    return ", ".join(names)


@dataclass(frozen=True)
class Class:
    """A class's score: its logit, softmax probability, or sigmoid (multi-label models).

    Args:
        classes: index or name for every image, one per image, or None for each image's top-1.
        score: "logit", "softmax" or "sigmoid".

    Example:
        >>> from visionlens.attribution import Class
        >>> model = vl.load_model()
        >>> vl.saliency(model, model.prepare("chelsea"), Class("tiger cat", score="softmax")).shape
        torch.Size([1, 224, 224])
    """

    classes: ClassSpec = None
    score: Score = "logit"

    def bind(self, model: Any, output: Any) -> BoundTarget:
        """Resolve the classes on the clean output (see `BoundTarget`)."""
        if self.score not in SCORES:
            raise TargetError(f"`score` must be one of {', '.join(SCORES)}, not {self.score!r}")
        out = output_tensor(output)
        if _is_map(out):  # a segmentation output: a class means its region
            return Region(self.classes).bind(model, output)
        if out.ndim != 2:
            raise TargetError(
                f"the model output has shape {tuple(out.shape)}, not (batch, classes): "
                "use a Similarity target for an embedding or a callable target"
            )
        classes = _class_list(model, self.classes, out.shape[0], out.shape[1], out.detach().argmax(-1))
        kind = self.score

        def scores(o: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
            if kind == "softmax":
                o = o.softmax(-1)
            elif kind == "sigmoid":
                o = o.sigmoid()
            return o.gather(1, classes.view(-1, 1).to(o.device)).squeeze(1)

        what = "" if kind == "logit" else f" ({kind})"
        return BoundTarget(scores, classes, _class_label(model, classes) + what, {"classes": classes})


@dataclass(frozen=True)
class Contrast:
    """Logit of class `a` minus logit of class `b`: what makes the image `a` rather than `b`.

    Args:
        a: the class to explain (index or name; None: each image's top-1).
        b: the class it is contrasted with (index or name; None: each image's second choice).

    Example:
        >>> from visionlens.attribution import Contrast
        >>> model = vl.load_model()
        >>> vl.gradcam(model, model.prepare("chelsea"), Contrast("tiger cat", "tabby cat")).shape
        torch.Size([1, 224, 224])
    """

    a: ClassSpec = None
    b: ClassSpec = None

    def bind(self, model: Any, output: Any) -> BoundTarget:
        """Resolve both classes on the clean output (see `BoundTarget`)."""
        out = output_tensor(output)
        if out.ndim != 2:
            raise TargetError(
                f"a contrast needs (batch, classes) logits; the model output has shape {tuple(out.shape)}"
            )
        top2 = out.detach().topk(2, dim=-1).indices
        a = _class_list(model, self.a, out.shape[0], out.shape[1], top2[:, 0])
        second = torch.where(top2[:, 0] == a, top2[:, 1], top2[:, 0])
        b = _class_list(model, self.b, out.shape[0], out.shape[1], second)
        if bool((a == b).any()):
            raise TargetError(f"a contrast of class {int(a[a == b][0])} with itself explains nothing; give two classes")

        def scores(o: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return o.gather(1, a.view(-1, 1).to(o.device)).squeeze(1) - o.gather(1, b.view(-1, 1).to(o.device)).squeeze(
                1
            )

        label = f"{_class_label(model, a)} - {_class_label(model, b)}"
        return BoundTarget(scores, a, label, {"a": a, "b": b})


@dataclass(frozen=True)
class Region:
    """A segmentation output's class score summed over a region: the mask's pixels, or the
    pixels predicted as the class (pytorch-grad-cam's semantic-segmentation target).

    Args:
        classes: the class (index or name) for every image or one per image; None: the class
            that covers most pixels in each image.
        mask: (H, W) or (B, H, W) boolean or weight mask at any resolution (resized, nearest,
            to the output's), or None for the predicted pixels.

    Example:
        >>> import torchvision
        >>> from visionlens.attribution import Region
        >>> net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
        >>> model = vl.as_model(net.eval())
        >>> vl.gradcam(model, torch.rand(1, 3, 96, 96), Region(), layer="backbone.16").shape  # the largest class
        torch.Size([1, 96, 96])
    """

    classes: ClassSpec = None
    mask: torch.Tensor | None = field(default=None, compare=False)

    def bind(self, model: Any, output: Any) -> BoundTarget:
        """Resolve the class and the mask on the clean output (see `BoundTarget`)."""
        out = output_tensor(output)
        if not _is_map(out):
            raise TargetError(
                f"a region target needs a segmentation output (batch, classes, H, W); the model output has shape "
                f"{tuple(out.shape)}: give a class instead"
            )
        b, n = out.shape[:2]
        pred = out.detach().argmax(1)
        counts = F.one_hot(pred.flatten(1), n).sum(1)
        classes = _class_list(model, self.classes, b, n, counts.argmax(-1))
        if self.mask is None:
            mask = (pred == classes.view(-1, 1, 1)).to(out.dtype)
            where = "predicted pixels"
        else:
            m = torch.as_tensor(self.mask).to(out.device, out.dtype)
            if m.ndim == 2:
                m = m.expand(b, *m.shape)
            if m.ndim != 3 or m.shape[0] != b:
                raise TargetError(f"`mask` must be (H, W) or ({b}, H, W), got {tuple(m.shape)}")
            mask = F.interpolate(m[:, None], size=out.shape[-2:], mode="nearest")[:, 0]
            where = "mask"
        if not bool((mask.flatten(1).sum(1) > 0).all()):
            raise TargetError(f"the region of class {int(classes[0])} is empty in an image: no pixel to explain")

        def scores(o: torch.Tensor, classes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            picked = o.gather(1, classes.view(-1, 1, 1, 1).expand(-1, 1, *o.shape[-2:]).to(o.device))[:, 0]
            return (picked * mask).flatten(1).sum(1)

        return BoundTarget(
            scores, classes, f"{_class_label(model, classes)} over the {where}", {"classes": classes, "mask": mask}
        )


@dataclass(frozen=True)
class Similarity:
    """Cosine similarity of the output (an embedding; maps are flattened) to a reference:
    what in this image makes it look like the reference to the network.

    Args:
        reference: a reference embedding, (D,) or one per image (B, D), or reference images as
            model input (N, 3, H, W), whose embeddings are computed (and averaged when N > 1).

    Example:
        >>> import torchvision
        >>> from visionlens.attribution import Similarity
        >>> net = torchvision.models.resnet18(num_classes=10)
        >>> net.fc = torch.nn.Identity()                # a backbone: 512-d embeddings
        >>> model = vl.as_model(net.eval())
        >>> ref, x = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
        >>> vl.saliency(model, x, Similarity(ref)).shape
        torch.Size([2, 64, 64])
    """

    reference: torch.Tensor = field(compare=False)

    def bind(self, model: Any, output: Any) -> BoundTarget:
        """Compute the reference embedding and check it fits the output (see `BoundTarget`)."""
        out = output_tensor(output).flatten(1)
        ref = torch.as_tensor(self.reference).detach()
        if ref.ndim == 4:  # images: embed them
            with torch.no_grad():
                ref = output_tensor(model.net(ref.to(model.device))).flatten(1).mean(0)
        ref = ref.to(out.device, out.dtype)
        if ref.ndim == 1:
            ref = ref.expand(out.shape[0], -1)
        if ref.ndim != 2 or ref.shape != out.shape:
            raise TargetError(
                f"the reference embedding has shape {tuple(ref.shape)}; the model's is {tuple(out.shape)}"
            )

        def scores(o: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
            return F.cosine_similarity(o.flatten(1), ref.to(o.device), dim=1)

        return BoundTarget(scores, None, "similarity to the reference", {"ref": ref})


@dataclass(frozen=True)
class Function:
    """Any callable from the model output to one score per image (B,), or to a scalar when
    explaining one image.

    Args:
        fn: the callable; it receives the output tensor (the `"out"` entry of a dict output).
        label: a short description for captions.

    Example:
        >>> from visionlens.attribution import Function
        >>> model = vl.load_model()
        >>> top5 = Function(lambda out: out.topk(5, dim=-1).values.sum(-1), "top-5 logits")
        >>> vl.saliency(model, model.prepare("chelsea"), top5).shape
        torch.Size([1, 224, 224])
    """

    fn: Callable[[torch.Tensor], torch.Tensor] = field(compare=False)
    label: str = "custom target"

    def bind(self, model: Any, output: Any) -> BoundTarget:
        """Check the callable gives one score per image (see `BoundTarget`)."""
        out = output_tensor(output)
        s = torch.as_tensor(self.fn(out.detach()))
        if s.numel() != out.shape[0]:
            raise TargetError(
                f"the target callable returned {s.numel()} values for {out.shape[0]} images; return one per image"
            )
        fn = self.fn
        return BoundTarget(lambda o: fn(o), None, self.label)


TargetSpec = (
    ClassSpec | Class | Contrast | Region | Similarity | Function | BoundTarget | Callable[[torch.Tensor], torch.Tensor]
)


def as_target(target: TargetSpec, softmax: bool = False) -> Any:
    """The target object for any accepted spec (see the module's docstring); `softmax`
    makes a plain class spec score the probability.

    Args:
        target: None, a class index or name, a list of them, a tensor of indices, a target
            object, or a callable on the model output.
        softmax: for a plain class spec, explain the probability instead of the logit.

    Returns:
        An object with `bind(model, output) -> BoundTarget`.

    Example:
        >>> from visionlens.attribution.targets import as_target
        >>> as_target("tiger cat", softmax=True)
        Class(classes='tiger cat', score='softmax')
    """
    if isinstance(target, (Class, Contrast, Region, Similarity, Function)):
        if softmax and isinstance(target, Class) and target.score == "logit":
            return replace(target, score="softmax")
        return target
    if isinstance(target, BoundTarget):
        return _Bound(target)
    if callable(target) and not isinstance(target, torch.Tensor):
        return Function(target)
    return Class(target, "softmax" if softmax else "logit")


@dataclass(frozen=True)
class _Bound:
    bound: BoundTarget

    def bind(self, model: Any, output: Any) -> BoundTarget:
        return self.bound


def bind(
    model: Any, x: torch.Tensor, target: TargetSpec = None, softmax: bool = False, output: Any = None
) -> BoundTarget:
    """Resolve `target` for the images `x`, running the model once when `output` (its clean
    output on `x`) is not given.

    Args:
        model: a `Model` or `nn.Module`.
        x: model input, (B, 3, H, W).
        target: any target spec (see the module's docstring).
        softmax: for a plain class spec, explain the probability.
        output: the model's output on `x`, when already computed.

    Returns:
        The `BoundTarget`.

    Example:
        >>> model = vl.load_model()
        >>> vl.attribution.bind(model, model.prepare("chelsea")).classes
        tensor([282])
    """
    from ..models import as_model

    model = as_model(model)
    if output is None:
        was_training = model.net.training
        model.net.eval()
        try:
            with torch.no_grad():
                output = model.net(x.to(model.device))
        finally:
            model.net.train(was_training)
    return as_target(target, softmax).bind(model, output)

"""Which map to trust: several attribution methods on the same images and target, each with
its faithfulness numbers (deletion and insertion AUC, ROAD) and the time it took."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ArgumentError, did_you_mean
from ..models import Model, as_model
from ..tracing import clock
from ._common import Target
from .methods import METHODS, attribution, available_methods
from .metrics import Curve, deletion_insertion, road
from .targets import BoundTarget, bind

METRICS = ("deletion", "insertion", "road")
DEFAULT_METHODS = ("gradient", "smoothgrad", "ig", "gradcam", "gradcam++", "scorecam", "occlusion")


@dataclass
class MethodScore:
    """One method's map and numbers (means over the images; per-image values in the curves).

    Args:
        method: the method's name.
        maps: (B, H, W) its maps.
        seconds: wall time of the maps.
        curves: {"deletion", "insertion", "road-morf", "road-lerf"}: `Curve`s measured.

    Example:
        >>> from visionlens.attribution.evaluate import MethodScore
        >>> MethodScore("gradcam", torch.zeros(1, 4, 4), 0.1).deletion_auc is None
        True
    """

    method: str
    maps: torch.Tensor = field(repr=False)
    seconds: float
    curves: dict[str, Curve] = field(default_factory=dict, repr=False)

    def _mean(self, kind: str, what: str) -> float | None:
        c = self.curves.get(kind)
        return None if c is None else float(np.mean(getattr(c, what)))

    @property
    def deletion_auc(self) -> float | None:
        """Mean deletion AUC (lower is more faithful)."""
        return self._mean("deletion", "auc")

    @property
    def insertion_auc(self) -> float | None:
        """Mean insertion AUC (higher is more faithful)."""
        return self._mean("insertion", "auc")

    @property
    def road_morf(self) -> float | None:
        """Mean score after ROAD most-relevant-first removal (lower is more faithful)."""
        return self._mean("road-morf", "mean")

    @property
    def road_lerf(self) -> float | None:
        """Mean score after ROAD least-relevant-first removal (higher is more faithful)."""
        return self._mean("road-lerf", "mean")


@dataclass
class Evaluation:
    """Every method's `MethodScore` on the same images and target.

    Args:
        scores: one `MethodScore` per method, in the order asked.
        target: the `BoundTarget` every map explains.
        score_kind: what the curves measure ("probability" or "logit"...).

    Example:
        >>> model = vl.load_model()
        >>> x = model.prepare("chelsea", size=64)
        >>> ev = vl.evaluate(model, x, ["gradient", "gradcam"], steps=8, metrics=["deletion"])
        >>> [row["method"] for row in ev.table()]
        ['gradient', 'gradcam']
    """

    scores: list[MethodScore]
    target: BoundTarget
    score_kind: str

    def table(self) -> list[dict[str, Any]]:
        """One dict per method: method, seconds, deletion, insertion, road_morf, road_lerf
        (None for a metric not measured)."""
        return [
            {
                "method": s.method,
                "seconds": s.seconds,
                "deletion": s.deletion_auc,
                "insertion": s.insertion_auc,
                "road_morf": s.road_morf,
                "road_lerf": s.road_lerf,
            }
            for s in self.scores
        ]

    def best(self, metric: str) -> str | None:
        """The method with the most faithful value of `metric` (lowest deletion or ROAD MoRF,
        highest insertion or ROAD LeRF), or None when it was not measured."""
        lower = metric in ("deletion", "road_morf")
        rows = [r for r in self.table() if r.get(metric) is not None]
        if not rows:
            return None
        pick = min if lower else max
        return str(pick(rows, key=lambda r: r[metric])["method"])


def check_names(methods: Sequence[str], metrics: Sequence[str], model: Model | torch.nn.Module | None = None) -> None:
    """Raise a one-line `ArgumentError` for an empty method list, an unknown method (with the
    closest names), a method that does not apply to `model` (guided backprop without a
    ReLU, rollout without attention) or an unknown metric.

    Args:
        methods: method names.
        metrics: metric names.
        model: when given, also check that each method applies to it.

    Example:
        >>> from visionlens.attribution.evaluate import check_names
        >>> check_names(["gradcam", "ig"], ["deletion"])
    """
    if not methods:
        raise ArgumentError("`methods` is empty; name at least one method")
    for name in methods:
        if name not in METHODS:
            raise ArgumentError(f"unknown method {name!r}{did_you_mean(name, list(METHODS))}")
    for metric in metrics:
        if metric not in METRICS:
            raise ArgumentError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if model is not None:
        usable = available_methods(model)
        for name in methods:
            if name not in usable:
                raise ArgumentError(f"{name} does not apply to {as_model(model).name}; it can use {', '.join(usable)}")


def default_methods(model: Model | torch.nn.Module) -> list[str]:
    """The methods `evaluate` compares when none are named: gradient, smoothgrad, ig,
    gradcam, gradcam++, scorecam and occlusion, with rollout added on ViT-style models.

    Args:
        model: a `Model` or `nn.Module`.

    Returns:
        Method names.

    Example:
        >>> from visionlens.attribution.evaluate import default_methods
        >>> default_methods(vl.load_model())
        ['gradient', 'smoothgrad', 'ig', 'gradcam', 'gradcam++', 'scorecam', 'occlusion']
    """
    usable = available_methods(model)
    return [m for m in (*DEFAULT_METHODS, "rollout") if m in usable]


def evaluate(
    model: Model | torch.nn.Module,
    x: torch.Tensor,
    methods: Sequence[str] | None = None,
    target: Target = None,
    *,
    metrics: Sequence[str] = ("deletion", "insertion"),
    steps: int = 50,
    softmax: bool = True,
    layer: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    progress: Any = None,
) -> Evaluation:
    """Attribution maps of several methods for the same images and target, each measured by
    the faithfulness metrics.

    Args:
        model: a `Model` or `nn.Module`.
        x: model input, (B, 3, H, W).
        methods: names from `visionlens.attribution.methods.METHODS`; default: gradient,
            smoothgrad, ig, gradcam, gradcam++, scorecam, occlusion (those that apply).
        target: what every map explains (any target spec; None: each image's top-1 class).
        metrics: any of "deletion", "insertion", "road".
        steps: points on the deletion and insertion curves.
        softmax: the curves measure the class probability (plain class targets), not the logit.
        layer: the CAM methods' layer (default: the last spatial layer).
        options: per-method options, e.g. {"ig": {"steps": 64}}.
        progress: a callable called with each method's name when it is done (for progress).

    Returns:
        An `Evaluation`.

    Example:
        >>> model = vl.load_model()
        >>> ev = vl.evaluate(model, model.prepare("chelsea", size=128), ["gradcam"], steps=8)
        >>> ev.scores[0].insertion_auc > ev.scores[0].deletion_auc
        True
    """
    model = as_model(model)
    x = x.to(model.device)
    names = list(methods) if methods is not None else default_methods(model)
    check_names(names, metrics, model)
    bound = bind(model, x, target)
    curve_target = bind(model, x, target, softmax) if softmax else bound
    out = []
    for name in names:
        opts = dict((options or {}).get(name, {}))
        if layer is not None:
            opts.setdefault("layer", layer)
        t0 = clock(x.device)
        maps = attribution(model, x, name, bound, **opts).detach()
        seconds = clock(x.device) - t0
        score = MethodScore(name, maps.cpu(), seconds)
        if "deletion" in metrics or "insertion" in metrics:
            d, i = deletion_insertion(model, x, maps, curve_target, steps=steps)
            if "deletion" in metrics:
                score.curves["deletion"] = d
            if "insertion" in metrics:
                score.curves["insertion"] = i
        if "road" in metrics:
            morf, lerf = road(model, x, maps, curve_target)
            score.curves["road-morf"], score.curves["road-lerf"] = morf, lerf
        out.append(score)
        if progress is not None:
            progress(name)
    kind = "probability" if softmax and curve_target.label.endswith("(softmax)") else "score"
    return Evaluation(out, bound, kind)

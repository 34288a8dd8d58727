"""Real models counted by convcost against the figures their authors publish.

    pip install torch==2.14.1 torchvision==0.29.1 timm    # in a venv outside the repo, with convcost installed
    python benchmarks/real_models.py                      # about a minute on 2 cores
    python benchmarks/real_models.py --markdown           # the README's table

Each model is built without weights (``weights=None``: the figures do not depend on them), put in ``eval()``
and counted in process with ``convcost.run.model.evaluate_import(model=...)`` at its published input size
(torchvision: its weights' crop), batch 1. torchvision's figures come from its own weight metadata
(``num_params`` and ``_ops``, which are GMACs, rounded to 3 decimals); timm publishes no figures in its package,
so its models are shown with convcost's counts, ``ok`` (every check passed: shapes, params, both counters where
they see an op) and ``complete`` (every op counted by a formula). A model whose figures differ from
torchvision's beyond its rounding is marked ✗.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

TORCHVISION = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny",
               "regnet_y_400mf", "shufflenet_v2_x1_0", "squeezenet1_0", "densenet121", "mnasnet0_5", "maxvit_t",
               "vit_b_16", "swin_t", "swin_v2_t"]  # fmt: skip
TIMM = ["vit_tiny_patch16_224", "deit_tiny_patch16_224", "efficientformer_l1", "mobilevit_s", "convnext_atto",
        "levit_128", "coat_lite_tiny", "poolformer_s12", "mixer_b16_224", "swin_tiny_patch4_window7_224",
        "crossvit_tiny_240", "eva02_tiny_patch14_224", "fastvit_t8"]  # fmt: skip


def _published(name: str) -> tuple[int | None, float | None, int]:
    """torchvision's published params and GMACs for a model, and the input size they are for (its crop)."""
    import torchvision

    weights = next(iter(torchvision.models.get_model_weights(name)))
    meta: dict[str, Any] = weights.meta
    size = int(getattr(weights.transforms, "keywords", {}).get("crop_size", 224))
    return meta.get("num_params"), meta.get("_ops"), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    arguments = parser.parse_args()
    logging.disable(logging.WARNING)
    import timm
    import torch
    import torchvision

    from convcost.run.model import evaluate_import

    torch.set_num_threads(1)
    rows = []
    for source, name in [("torchvision", name) for name in TORCHVISION] + [("timm", name) for name in TIMM]:
        if source == "torchvision":
            params_published, gmacs_published, size = _published(name)
            model = torchvision.models.get_model(name, weights=None)
        else:
            params_published, gmacs_published = None, None
            model = timm.create_model(name, pretrained=False)
            size = int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
        started = time.perf_counter()
        result = evaluate_import(f"{source}:{name}", (3, size, size), model=model.eval())
        seconds = time.perf_counter() - started
        agrees = None
        if params_published is not None and gmacs_published is not None:
            agrees = result.total.params == params_published and round(result.total.macs / 1e9, 3) == gmacs_published
        rows.append((source, name, size, result.total.params, params_published, result.total.macs, gmacs_published,
                     result.ok, result.complete, agrees, seconds))  # fmt: skip
    if arguments.markdown:
        print("| model | input | params | published | GMACs | published | ok | complete |")
        print("|---|---|---|---|---|---|---|---|")
    for source, name, size, params, params_published, macs, gmacs, ok, complete, agrees, seconds in rows:
        mark = "" if agrees is None else " ✓" if agrees else " ✗"
        published = f"{params_published:,}" if params_published is not None else "—"
        gmacs_text = f"{gmacs:.3f}{mark}" if gmacs is not None else "—"
        if arguments.markdown:
            print(f"| {source} `{name}` | {size}² | {params:,} | {published} | {macs / 1e9:.3f} | {gmacs_text} | "
                  f"{'✓' if ok else '✗'} | {'✓' if complete else '✗'} |")  # fmt: skip
        else:
            print(f"{source:11} {name:30} {size:3}² params {params:>11,} ({published:>11}) GMACs {macs / 1e9:8.3f} "
                  f"({gmacs_text:>8}) ok={ok} complete={complete} {seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()

"""The command line: ``python -m disentangled_face.training --config book|paper|path.yaml``.

::

    python -m disentangled_face.training --config book [--phase all|phase1|...] [--resume]
    python -m disentangled_face.training --config book --set train.phase1.epochs=2 --set train.seed=1
    python -m disentangled_face.training --config book --phase phase1 --targets single_image   # 3DDFA-like
    torchrun --nproc_per_node=8 -m disentangled_face.training --config paper

The profile is read and validated once, here (:func:`~disentangled_face.config.load_config`).
"""

from __future__ import annotations

import argparse
import yaml
from typing import Sequence

from .._yaml import ProfileLoader
from ..config import ConfigError, load_config
from .data import TARGETS
from .distributed import close_distributed, dist_info
from .phases import PHASES
from .pipeline import train_pipeline

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m disentangled_face.training",
                                 description="Train the encoder-decoder of Liu et al. (CVPR 2018): "
                                             "Phase I, II, III (Sec. 3.3.3) and the texture baseline.")
    ap.add_argument("--config", default="book", help="profile name (book, paper) or a YAML path")
    ap.add_argument("--phase", default="all", choices=("all", *PHASES), help="which phase (default: all)")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted phase from its state checkpoint (else restart it)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="override one key of the profile, e.g. train.phase1.epochs=2 (a YAML value; repeatable)")
    ap.add_argument("--targets", default="fitted", choices=TARGETS,
                    help="what Phase I/II regress: the multi-image 3DMM fits of the training images (the "
                         "paper's targets, default), each image's single-image fit (single_image: the "
                         "3DDFA-like rival, --phase phase1) or the synthetic ground truth")
    ap.add_argument("--device", default=None, help="override train.device (cpu, cuda, cuda:N)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def _overrides(items: Sequence[str], ap: argparse.ArgumentParser) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--set expects KEY=VALUE (e.g. train.phase1.epochs=2), got {item!r}")
        try:
            out[key.strip()] = yaml.load(value, Loader=ProfileLoader)
        except yaml.YAMLError as exc:
            ap.error(f"--set {key}: not a YAML value ({exc})")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, train the asked phases, print the run folder and final losses (rank 0).

    An invalid profile or override exits with status 2 and one line naming the key's path.
    """
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, _overrides(args.overrides, ap))
    except ConfigError as exc:
        ap.error(str(exc))
    phases = PHASES if args.phase == "all" else (args.phase,)
    out = train_pipeline(cfg, progress=not args.no_progress, phases=phases, resume=args.resume,
                         targets=args.targets, device=args.device)
    rank, _ = dist_info()
    if rank == 0:
        print(f"run folder: {out.run_dir}")
        for p, ck in out.checkpoints.items():
            e = out.epochs[p]
            last = f"{e.loss.iloc[-1]:.4g}" if len(e) else "n/a"
            print(f"  {p}: {ck}  (final epoch loss {last})")
    close_distributed()
    return 0

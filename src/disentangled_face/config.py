"""Profiles: one YAML file per profile, one section per stage of the pipeline.

``book`` is the CPU profile the book runs on (each chapter executes in minutes); ``paper`` is
the published scale, for GPUs. A chapter picks a profile with one variable at its top
(``PROFILE = "book"``); nothing else differs. The files live in
``src/disentangled_face/configs/<profile>.yaml``; a user may also pass any YAML path.

Sections: ``model`` (which morphable model), ``synth`` (populations and protocols),
``fitting`` (the 3DMM fitter), ``network`` and ``train`` (the encoder-decoder and its phases),
``experiments`` (evaluation sizes).
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("book", "paper")
SECTIONS = ("model", "synth", "fitting", "network", "train", "experiments")


class ConfigError(ValueError):
    """A config file or value is invalid (the message names the key and what was expected)."""


def load_profile(profile: str | os.PathLike = "book") -> dict[str, Any]:
    """Load a profile by name (``"book"``, ``"paper"``) or from a YAML path.

    Returns
    -------
    dict
        ``{section: {key: value}}`` with every section of :data:`SECTIONS` present.

    Raises
    ------
    ConfigError
        Unknown profile name, unreadable YAML, unknown or missing section.
    """
    if isinstance(profile, str) and profile in PROFILES:
        text = resources.files(__package__).joinpath("configs", f"{profile}.yaml").read_text()
        source = f"profile '{profile}'"
    else:
        path = Path(profile)
        if not path.is_file():
            raise ConfigError(f"unknown profile {profile!r}: expected one of {PROFILES} or a YAML file path")
        text, source = path.read_text(), str(path)
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: expected a mapping of sections {SECTIONS}")
    unknown = set(cfg) - set(SECTIONS) - {"profile"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected {SECTIONS}")
    out = {s: copy.deepcopy(cfg.get(s) or {}) for s in SECTIONS}
    out["profile"] = cfg.get("profile", str(profile))
    return out

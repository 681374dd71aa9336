"""Sphinx extension: pages that are read (hence executed) on every build.

The introduction's box reads the numbers the chapters wrote under ``data/results/``; Sphinx
reads a page again only when its own source changed, so after a build that re-executed some
chapters the box would keep the old numbers. Every page named in ``always_read_docs`` is
marked outdated on each build (``env-get-outdated``); Sphinx reads pages in name order, so
``book/intro`` comes after the chapters, and its ``execution_mode: force`` runs it again.
"""

from __future__ import annotations


def _always_outdated(app, env, added, changed, removed):
    return [doc for doc in app.config.always_read_docs if doc in env.found_docs]


def setup(app):
    app.add_config_value("always_read_docs", [], "env")
    app.connect("env-get-outdated", _always_outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

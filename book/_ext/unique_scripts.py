"""Sphinx extension: each page loads every script once.

sphinx-thebe adds its inline configuration script (``const THEBE_JS_URL = ...``) on every
``env-before-read-docs``, which a Jupyter Book build emits twice, so each page declared the
same ``const`` twice and the browser raised ``SyntaxError: Identifier 'THEBE_JS_URL' has
already been declared``. This drops repeated entries (same file, or same inline body) from the
page's scripts; ``.ci/browser_check.py`` fails on any JavaScript error.
"""

from __future__ import annotations


def _unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        # the same script comes back once with filename None and once with "" (an inline body)
        name = getattr(js, "filename", js) or ""
        key = (str(name), tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

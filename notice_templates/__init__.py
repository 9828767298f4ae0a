"""The built-in notice templates: ``<recipient_kind>/<language>.{txt,html}.j2`` (data only).

A package so the wheel ships them; the notice stage renders them (``plugins/notify/render.py``)
and ``[notices] template_dir`` overrides them per file.
"""

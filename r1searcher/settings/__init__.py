"""The sections of the one config tree (:class:`r1searcher.config.Config`), one small module each.

Every field is declared with :func:`~r1searcher.settings.fields.knob`: its default, one help string
(shown by ``r1searcher config``), and the checks that hold for it alone (a set of choices, a lower or
upper bound), run whenever a section is made. Checks between fields live in
:mod:`~r1searcher.settings.validate`. The sections are frozen: a changed config is derived
(:func:`r1searcher.config.derive`), never assigned to.

This package sits at the bottom of the layers (beside ``paths``): it imports nothing from the rest of
``r1searcher``.
"""

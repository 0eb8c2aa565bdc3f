"""Sub-commands of the ``r1searcher`` CLI: one module each.

Every module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``, and
keeps heavy imports (torch, transformers) inside ``run`` so that ``r1searcher --help`` stays fast.
Module ``foo_bar`` becomes the sub-command ``foo-bar``; ``cli.py`` discovers them.
"""

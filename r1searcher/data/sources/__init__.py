"""Fetching the paper's data from its public homes (``r1searcher data get`` / ``data list``).

``registry`` names what can be fetched, ``download`` and ``hub`` bring files in (resumable,
hash-checked), ``convert`` turns them into the project's QA and corpus formats, ``fetch`` ties
them together under the data root.
"""

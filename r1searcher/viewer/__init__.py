"""The trajectory viewer: one static, self-contained HTML page over training samples and eval predictions.

``records`` reads runs into rows (and writes the trainer's ``samples.jsonl`` lines); ``page`` embeds
them with the page's CSS and JavaScript (``assets``) into one file.
"""

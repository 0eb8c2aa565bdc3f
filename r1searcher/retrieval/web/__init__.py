"""Online search: a search API, page fetching and chunking, the paper's per-page summary, a cache."""

"""The tantivy BM25 index: a bounded-memory builder and a reader."""

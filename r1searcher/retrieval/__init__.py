"""Retrieval: corpora, indexes (BM25, dense, hybrid), the HTTP server and client, web search."""

from r1searcher.retrieval.base import Passage, Retriever, RetrieverError, format_documents

__all__ = ["Passage", "Retriever", "RetrieverError", "format_documents"]

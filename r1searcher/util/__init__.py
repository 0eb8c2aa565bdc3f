"""Small shared building blocks with no r1searcher imports above them: files, locks, clocks, HTTP."""

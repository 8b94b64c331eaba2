"""Usage accounting: one row per answer, its tokens and cost, and the totals."""

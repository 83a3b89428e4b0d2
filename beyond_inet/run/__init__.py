"""Running evaluations: the records (``records``), the rank-aware single pass (``engine``),
what to run (``plan``) and the orchestration that scores and stores it (``pipeline``)."""

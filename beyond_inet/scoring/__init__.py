"""Scoring: pure metric functions (``metrics``), the evaluations that compose them per view
and per run (``evaluations``), and the metric catalogue (``catalogue``)."""

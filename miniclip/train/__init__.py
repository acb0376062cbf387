"""Training: the loop (loop.py; ``python -m miniclip.train``), AdamW and the schedule,
evaluation and plots; on several processes with --distributed (distributed.py)."""

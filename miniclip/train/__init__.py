"""Training: the loop (loop.py; ``python -m miniclip.train``), AdamW and the schedule,
evaluation and plots."""

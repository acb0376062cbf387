"""The CLIP model: config and parameter counting, the layers built on miniclip.backend's ops
(packed multi-head attention, MLP, residual block, patch embedding), the two towers, the losses
and the exact gradient of a batch, in micro-batches (gradcache.py) or over MPI processes
(local_loss.py, distributed.py)."""

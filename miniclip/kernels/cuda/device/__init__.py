"""The device-array runtime: arrays that live in GPU memory and that NumPy's functions dispatch
to, so the reference layers, the loss and AdamW run on the GPU unchanged."""

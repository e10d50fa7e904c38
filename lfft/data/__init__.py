"""The data stages: collect, clean, normalize, split (pyarrow only; no torch)."""

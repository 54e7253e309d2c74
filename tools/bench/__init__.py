"""The jobs of tools/benchmark.py, one module each (forward, train_step, data, scaling).

Shared pieces: `records` (the JSON line every measurement prints), `timing`
(calls taken in turns with the PyTorch reference), `networks` (the benchmarked
networks with random weights) and `torch_side` (the optional reference).
"""

"""Pieces of tools/compare_training.py: whole training runs of the port and the reference, side by side.

settings     the compared settings: our config keys next to the reference's yacs keys, and the refusal
curves       the result rows of one run, the table over seeds and the definition of a collapsed run
cache        where a finished (side, seed) run is kept, keyed on everything that decides it
plot         the PNG of both sides' curves (matplotlib, imported only there)
port_run     one port run in its own process (packnet_jax.train with a validation hook)
reference_run  one reference run in its own process (the public PackNet-SfM code on CPU torch)
ref_shims    stand-ins that let the reference's data code import on a modern torch-only install
"""

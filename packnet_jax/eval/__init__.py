"""packnet_jax.eval"""

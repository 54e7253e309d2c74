"""packnet_jax.convert"""

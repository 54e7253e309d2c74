"""packnet_jax.geometry"""

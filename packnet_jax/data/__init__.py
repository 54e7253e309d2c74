"""packnet_jax.data"""

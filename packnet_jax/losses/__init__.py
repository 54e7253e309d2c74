"""packnet_jax.losses"""

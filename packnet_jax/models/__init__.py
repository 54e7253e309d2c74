"""packnet_jax.models"""

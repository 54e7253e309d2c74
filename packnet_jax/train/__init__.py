"""packnet_jax.train"""

"""Eval-mode inverse depth of a depth net, with and without flip post-processing.

The single definition used by evaluation (training validation and the eval
CLI, pmapped there) and by `packnet_jax.load_model` (jitted). Pure functions
of (net, variables, images); the caller chooses jit or pmap.
"""
import jax.numpy as jnp

from packnet_jax.eval.metrics import post_process_inv_depth


def inv_depth_and_flipped(net, variables, images):
  """(inverse depth of `images`, inverse depth predicted on the flipped images), float32 [B,H,W,1].

  Both come from one batched forward pass over [images; flipped images]. The
  second output is NOT flipped back: `post_process_inv_depth` expects it as the
  network produced it (docs/reference.md §5).
  """
  b = images.shape[0]
  both = net.apply(variables, jnp.concatenate([images, jnp.flip(images, axis=2)], 0), train=False)
  both = both.astype(jnp.float32)
  return both[:b], both[b:]


def inv_depth(net, variables, images, flip_pp=False):
  """Inverse depth [B,H,W,1] float32; with `flip_pp` fused with the flipped-image prediction."""
  if not flip_pp:
    return net.apply(variables, images, train=False).astype(jnp.float32)
  return post_process_inv_depth(*inv_depth_and_flipped(net, variables, images))

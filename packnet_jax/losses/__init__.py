"""Pure-JAX losses on NHWC arrays."""
from packnet_jax.losses.photometric import multiview_photometric_loss
from packnet_jax.losses.smoothness import calc_smoothness, inv_depths_normalize, smoothness_loss
from packnet_jax.losses.ssim import ssim, ssim_loss

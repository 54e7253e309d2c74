"""Pure-JAX losses on NHWC arrays."""
from packnet_jax.losses.photometric import multiview_photometric_loss
from packnet_jax.losses.smoothness import calc_smoothness, inv_depths_normalize, smoothness_loss
from packnet_jax.losses.ssim import ssim, ssim_loss
from packnet_jax.losses.reprojected_distance import reprojected_distance_loss
from packnet_jax.losses.supervised import supervised_loss
from packnet_jax.losses.velocity import velocity_loss

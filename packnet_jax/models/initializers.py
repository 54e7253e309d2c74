"""The reference's parameter initialisers, named after the torch functions they reproduce.

From-scratch training has to start from the distributions the reference draws
from (docs/reference.md §2.9), not from Flax's defaults. The fans are torch's
for the same layer: jax's variance scaling takes the input axis −2, the output
axis −1 and the other axes as receptive field, which for our HWIO (Conv2d),
DHWIO (Conv3d) and [in, out] (Linear) kernels gives fan_in = in·prod(k) and
fan_out = out·prod(k), as torch computes them on OIHW / OIDHW / [out, in].
"""
import math

import jax
from jax.nn import initializers

# torch.nn.init.xavier_uniform_ (gain 1): U(±sqrt(6 / (fan_in + fan_out))).
xavier_uniform = initializers.xavier_uniform()

# torch.nn.init.kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, 2 / fan_out), NOT truncated
# (jax's 'normal' is the plain normal; he_normal would be a truncated one).
kaiming_normal_fan_out = initializers.variance_scaling(2.0, 'fan_out', 'normal')

# torch's default Conv2d / Linear weight, kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in)).
torch_default_kernel = initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')

zeros = initializers.zeros


def torch_default_bias(fan_in):
  """torch's default Conv2d / Linear bias, U(±1/sqrt(fan_in)), where fan_in is that of the layer's weight.

  The bias alone cannot know its layer's fan-in, so the caller passes it (see `conv_fan_in`).
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jax.numpy.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def conv_fan_in(in_features, kernel_size):
  """torch's fan-in of a Conv2d: in_features · kh · kw (`kernel_size` an int or a tuple)."""
  if isinstance(kernel_size, int):
    kernel_size = (kernel_size, kernel_size)
  return in_features * math.prod(kernel_size)


def torch_default_conv(in_features, kernel_size):
  """`layers.conv` initialiser arguments of torch's default Conv2d (weight and bias U(±1/sqrt(fan_in)))."""
  return dict(kernel_init=torch_default_kernel,
              bias_init=torch_default_bias(conv_fan_in(in_features, kernel_size)))

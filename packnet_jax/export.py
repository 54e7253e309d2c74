"""Export of a depth network to StableHLO (jax.export) or ONNX (jax2onnx).

CLI:
  python -m packnet_jax.export --checkpoint MODEL --format stablehlo|onnx --output F [--image_shape H,W]
      [--step N|best] [--dtype float32|bfloat16]

MODEL is a released `.ckpt`, a converted directory or a training workdir;
--image_shape defaults to the checkpoint's training shape.

Both formats take rgb [B,H,W,3] float32 in [0,1] with a symbolic batch B and
return the eval-mode inverse depth [B,H,W,1]; the weights are baked in.

ONNX goes through a primitive-level copy of the traced program (`export_friendly`)
rather than through jax2onnx's Flax-level shims: jax2onnx's shim for
`flax.linen.max_pool` drops explicit padding (the ResNet stem's 3×3/2 pad-1 pool
would change shape), so max-pools and pads are rewritten as plain slices and
concatenations. PackNet's Conv3d needs no rewrite: it is a 2-D convolution over
the depth taps on every backend (`models/fast/pack_conv.py`), plain ONNX `Conv`.
"""
import functools
import logging
import os
import sys

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export
from jax import lax

from packnet_jax import cli
from packnet_jax.eval import predict as predict_lib
from packnet_jax.utils import io as io_utils

FORMATS = ('stablehlo', 'onnx')
# Higher-order primitives whose body is inlined by `export_friendly` (custom
# differentiation rules are irrelevant for an inference graph).
_INLINE_PARAM = {'jit': 'jaxpr', 'pjit': 'jaxpr', 'closed_call': 'call_jaxpr',
                 'core_call': 'call_jaxpr', 'custom_jvp_call': 'call_jaxpr',
                 'custom_vjp_call': 'call_jaxpr', 'remat': 'jaxpr', 'checkpoint': 'jaxpr'}


def image_spec(image_shape, batch='B', dtype=jnp.float32):
  """ShapeDtypeStruct [batch,H,W,3]; a str batch is a symbolic dimension."""
  height, width = image_shape
  if isinstance(batch, str):
    batch, = jax_export.symbolic_shape(batch)
  return jax.ShapeDtypeStruct((batch, int(height), int(width), 3), dtype)


def inference_fn(model, variables):
  """rgb [B,H,W,3] → eval-mode inverse depth [B,H,W,1] float32 of a Flax depth net."""
  return functools.partial(predict_lib.inv_depth, model, variables)


# ----------------------------------------------------------------------------
# StableHLO.


def export_stablehlo(fn, image_shape):
  """Serialized `jax.export` artifact (bytes) of fn with a symbolic batch dimension."""
  exported = jax_export.export(jax.jit(fn))(image_spec(image_shape))
  return bytes(exported.serialize())


def load_stablehlo(data):
  """Deserializes `export_stablehlo` bytes; call the result's `.call(rgb)`."""
  return jax_export.deserialize(bytearray(data))


# ----------------------------------------------------------------------------
# Export-friendly program: primitives only, max-pools and pads rewritten.


def _pad_as_concat(x, padding_value, *, padding_config):
  """lax.pad (no interior padding) as a concatenation with constant blocks.

  jax2onnx's `pad` lowering cannot type its output when the shape has a symbolic
  (batch) dimension.
  """
  if any(interior != 0 or lo < 0 or hi < 0 for lo, hi, interior in padding_config):
    raise NotImplementedError('export: only non-negative, non-interior padding can be lowered for ONNX')
  value = jnp.asarray(padding_value, x.dtype)
  for axis, (lo, hi, _) in enumerate(padding_config):
    parts = []
    for size in (lo, hi):
      shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
      parts.append(jnp.broadcast_to(value, shape) if size else None)
    if lo or hi:
      x = jnp.concatenate([p for p in (parts[0], x, parts[1]) if p is not None], axis=axis)
  return x


def _max_pool_as_slices(x, *, window_dimensions, window_strides, padding, base_dilation=None,
                        window_dilation=None, **unused_params):
  """reduce_window_max as −inf padding + an elementwise max of strided slices.

  jax2onnx lowers reduce_window_max to a MaxPool whose kernel has the operand's
  full rank (4-D for NHWC), which onnxruntime rejects; slices and Max are plain ops.
  """
  if any(d != 1 for d in tuple(base_dilation or ()) + tuple(window_dilation or ())):
    raise NotImplementedError('export: only undilated max pooling can be lowered for ONNX')
  x = _pad_as_concat(x, -jnp.inf, padding_config=[(lo, hi, 0) for lo, hi in padding])
  out_shape = [(n - w) // s + 1 if w > 1 or s > 1 else n
               for n, w, s in zip(x.shape, window_dimensions, window_strides)]
  result = None
  for offset in np.ndindex(*window_dimensions):
    limit = [o + (n - 1) * s + 1 if w > 1 or s > 1 else n
             for o, n, w, s in zip(offset, out_shape, window_dimensions, window_strides)]
    tap = lax.slice(x, offset, limit, window_strides)
    result = tap if result is None else jnp.maximum(result, tap)
  return result


def _eval_friendly(jaxpr, consts, *args):
  """Evaluates a jaxpr, inlining call primitives and rewriting max-pools and pads."""
  env = {}

  def read(v):
    return v.val if isinstance(v, jex.core.Literal) else env[v]

  for var, val in zip(jaxpr.constvars, consts):
    env[var] = val
  for var, val in zip(jaxpr.invars, args):
    env[var] = val
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name in _INLINE_PARAM and _INLINE_PARAM[name] in eqn.params:
      inner = eqn.params[_INLINE_PARAM[name]]
      inner_jaxpr, inner_consts = (inner.jaxpr, inner.consts) if hasattr(inner, 'consts') else (inner, ())
      outs = _eval_friendly(inner_jaxpr, inner_consts, *invals)
    elif name == 'pad':
      outs = [_pad_as_concat(*invals, **eqn.params)]
    elif name == 'reduce_window_max':
      outs = [_max_pool_as_slices(*invals, **eqn.params)]
    else:
      outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
      outs = outs if eqn.primitive.multiple_results else [outs]
    for var, val in zip(eqn.outvars, outs):
      env[var] = val
  return [read(v) for v in jaxpr.outvars]


def export_friendly(fn, spec):
  """fn traced once at `spec` (symbolic dims allowed) as a function of primitives only.

  The returned function evaluates the traced program (weights as constants) with
  call primitives inlined and max-pools / pads rewritten; it must be
  called with arguments of `spec`'s shape (it is meant to be traced again).
  """
  closed = jax.make_jaxpr(fn)(spec)

  def friendly(rgb):
    return _eval_friendly(closed.jaxpr, closed.consts, rgb)[0]
  return friendly


# ----------------------------------------------------------------------------
# ONNX.


def _import_jax2onnx():
  try:
    # jax2onnx imports its optional Equinox/dm-pix plugins eagerly and logs a warning per missing one.
    for name in ('jax2onnx', 'onnx_ir'):
      logging.getLogger(name).setLevel(logging.ERROR)
    import jax2onnx  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ValueError('--format onnx: needs jax2onnx, onnx and onnxruntime '
                     f'(pip install --no-deps -r requirements-export.txt): {e}') from None
  return jax2onnx


def export_onnx(fn, image_shape, *, opset=17):
  """Serialized ONNX model (bytes) of fn, input 'rgb' [B,H,W,3] with a symbolic batch B."""
  jax2onnx = _import_jax2onnx()
  spec = image_spec(image_shape)
  model = jax2onnx.to_onnx(export_friendly(fn, spec), inputs=[spec], opset=opset,
                           model_name='packnet_jax_depth', input_names=['rgb'],
                           output_names=['inv_depth'], return_mode='proto')
  return model.SerializeToString()


def onnx_session(data):
  """An onnxruntime CPU InferenceSession of serialized ONNX bytes."""
  import onnxruntime  # pylint: disable=import-outside-toplevel
  options = onnxruntime.SessionOptions()
  options.log_severity_level = 3
  return onnxruntime.InferenceSession(data, options, providers=['CPUExecutionProvider'])


def run_onnx(session, rgb):
  """inv_depth [B,H,W,1] of a session from `onnx_session` on rgb [B,H,W,3]."""
  return session.run(None, {session.get_inputs()[0].name: np.asarray(rgb, np.float32)})[0]


# ----------------------------------------------------------------------------
# CLI.


def export_checkpoint(checkpoint, fmt, image_shape, output, *, step=None, dtype='float32'):
  """Loads a depth net from any model source and writes its export to `output`; returns the byte count.

  Args:
    image_shape: (H, W), or None for the checkpoint's training shape.
  """
  if fmt not in FORMATS:
    raise ValueError(f'--format: expected one of {FORMATS}, got {fmt!r}')
  # Fail before the (slow) export if the output folder cannot be written.
  io_utils.ensure_writable_dir(os.path.dirname(os.path.abspath(os.fspath(output))), '--output')
  from packnet_jax import api  # pylint: disable=import-outside-toplevel
  model = api.load_model(checkpoint, dtype=dtype, step=step)
  if model.depth_net is None:
    raise ValueError(f'{checkpoint}: checkpoint has no depth_net weights; nothing to export')
  image_shape = image_shape or model.image_shape
  if not image_shape:
    raise ValueError('--image_shape: the checkpoint stores no training image shape; pass --image_shape H,W')
  fn = inference_fn(model.depth_net, model.variables['depth'])
  data = export_stablehlo(fn, image_shape) if fmt == 'stablehlo' else export_onnx(fn, image_shape)
  io_utils.atomic_write_bytes(output, data)
  return len(data)


def parse_flags(argv):
  """Parses argv (program name first) into a private absl FlagValues."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  fv = flags.FlagValues()
  cli.define_checkpoint(fv)
  cli.define_dtype(fv)
  cli.define_image_shape(fv)
  flags.DEFINE_enum('format', None, list(FORMATS), 'output format', flag_values=fv, required=True)
  flags.DEFINE_string('output', None, 'output file', flag_values=fv, required=True)
  fv(argv)
  return fv


def _run(fv):
  size = export_checkpoint(fv.checkpoint, fv.format, cli.parse_image_shape(fv.image_shape), fv.output,
                           step=fv.step, dtype=fv.dtype)
  print(f'wrote {fv.output} ({fv.format}, {size} bytes)')
  return 0


def main(argv=None):
  return cli.run_main(parse_flags, _run, argv)


if __name__ == '__main__':
  sys.exit(main())

"""The project's only reaches into libraries' private APIs, for bucket workdirs (pinned, tested).

1. `install_orbax_s3()`: lets orbax 0.12.8 write arrays to `s3://`.
2. `route_epath_to_fsspec()`: etils.epath sends `gs://`/`s3://` to TensorFlow's
   gfile whenever TF is importable (TF 2.21 has no S3); `EPATH_USE_TF=false`
   turns that off, but etils caches its TF check at the first path it sees, so
   the cache is cleared too (tests/test_storage.py checks both).

On 1:

orbax builds tensorstore kvstore specs itself and knows only `gs://` as remote:
an `s3://` directory is normalised to `s3:/...` and rejected as not absolute.
tensorstore has an `s3` driver, but it takes the endpoint and region in its
spec, not from `AWS_ENDPOINT_URL`; this patch fills them from the same
environment variables boto3/s3fs read, so every client sees one bucket.

`install_orbax_s3()` replaces three module-level helpers of
`orbax.checkpoint._src.serialization.tensorstore_utils` (and nothing else),
refuses any other orbax version, and is idempotent. tests/test_storage.py pins
the spec it produces.
"""
import os

ORBAX_VERSION = '0.12.8'
_installed = False


def s3_kvstore_spec(url):
  """tensorstore kvstore spec of `s3://bucket/path` (endpoint/region from the AWS environment)."""
  bucket, _, path = url[len('s3://'):].partition('/')
  spec = {'driver': 's3', 'bucket': bucket, 'path': path}
  endpoint = os.environ.get('AWS_ENDPOINT_URL_S3') or os.environ.get('AWS_ENDPOINT_URL')
  if endpoint:
    spec['endpoint'] = endpoint
  region = os.environ.get('AWS_REGION') or os.environ.get('AWS_DEFAULT_REGION')
  if region:
    spec['aws_region'] = region
  return spec


def route_epath_to_fsspec():
  """Makes etils.epath use fsspec (gcsfs, s3fs) for bucket URLs from now on, in this process."""
  os.environ['EPATH_USE_TF'] = 'false'
  from etils.epath import gpath  # pylint: disable=import-outside-toplevel
  cache_clear = getattr(gpath._is_tf_installed, 'cache_clear', None)  # pylint: disable=protected-access
  if cache_clear is not None:
    cache_clear()


def install_orbax_s3():
  """Patches orbax's tensorstore spec builder for `s3://` (once)."""
  global _installed  # pylint: disable=global-statement
  if _installed:
    return
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from orbax.checkpoint._src.serialization import tensorstore_utils as tsu  # pylint: disable=import-outside-toplevel
  if ocp.__version__ != ORBAX_VERSION:
    raise ValueError(f's3://: supported with orbax-checkpoint=={ORBAX_VERSION} only '
                     f'(installed: {ocp.__version__}); use gs:// or a local folder')
  normalize, use_remote = tsu._normalize_path, tsu._use_gcs_driver  # pylint: disable=protected-access
  gcs_spec = tsu.gcs_utils.get_kvstore_for_gcs

  def _normalize_path(path):
    if path.startswith('s3://'):
      return 's3://' + normalize(path[len('s3://'):]).lstrip('/')
    return normalize(path)

  def _use_remote_driver(directory):
    return directory.startswith('s3://') or use_remote(directory)

  def _kvstore_spec(path):
    return s3_kvstore_spec(path) if path.startswith('s3://') else gcs_spec(path)

  class _GcsUtils:  # tensorstore_utils' view of gcs_utils: the same module but for one function
    def __getattr__(self, attr):
      return _kvstore_spec if attr == 'get_kvstore_for_gcs' else getattr(gcs_module, attr)

  gcs_module = tsu.gcs_utils
  tsu._normalize_path = _normalize_path  # pylint: disable=protected-access
  tsu._use_gcs_driver = _use_remote_driver  # pylint: disable=protected-access
  tsu.gcs_utils = _GcsUtils()
  _installed = True

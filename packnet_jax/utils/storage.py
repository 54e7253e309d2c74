"""Where a run's files live: a local folder, or a bucket URL (`gs://bucket/run`, `s3://bucket/run`).

Every reader and writer of a workdir goes through this module, so a path that is
a URL and one that is a folder are told apart in one place:

* local paths use `os` exactly as before (atomic rename for files);
* URLs use `etils.epath` routed to fsspec (`gcsfs`, `s3fs`), the same
  filesystem layer orbax uses for its own metadata, so the two see one bucket;
  an object store writes a whole object per PUT, which is already atomic.

`use_bucket(url)` prepares a URL before anything touches it: it checks the
package, routes epath away from TensorFlow (TF 2.21's gfile has no S3), and
makes one short request (before jax or orbax are imported) so that missing credentials, a missing bucket or an
unreachable endpoint is one ValueError naming the URL, in seconds.

Why write into the bucket rather than sync a local folder to it (the reference's
`aws s3 sync`): several hosts need one storage they all see for one orbax
checkpoint, a preempted VM loses nothing that was committed, and no disk holds
a second copy. Orbax's own rename-based commit cannot work on an object store,
so a bucket checkpoint uses orbax's commit-file protocol (workdir/checkpoints.py).

Orbax 0.12.8 writes arrays to `gs://` through tensorstore's gcs driver but
rejects `s3://`; `_patches` is the one place that reaches into its private
API to fix that (pinned to that version, see tests/test_storage.py), installed
by `workdir.checkpoints` before it opens an `s3://` checkpoint folder.
"""
import os
import posixpath

SCHEMES = {'gs': 'gcsfs', 's3': 's3fs'}  # URL scheme → the fsspec package that serves it
# Seconds and tries for one request before a bad URL is reported (a hang is worse than a retry less).
CONNECT_TIMEOUT_S = 5
RETRIES = 2


def scheme(path):
  """'gs' / 's3' for a bucket URL, None for a local path; ValueError for another scheme."""
  text = os.fspath(path)
  if '://' not in text:
    return None
  name = text.split('://', 1)[0].lower()
  if name not in SCHEMES:
    raise ValueError(f'{text}: unsupported URL scheme {name}:// (use a local folder, gs:// or s3://)')
  return name


def is_url(path):
  return scheme(path) is not None


def join(base, *parts):
  """os.path.join for folders, '/'-join for URLs."""
  base = os.fspath(base)
  if is_url(base):
    return posixpath.join(base.rstrip('/'), *parts)
  return os.path.join(base, *parts)


def absolute(path):
  """A local path made absolute; a URL without its trailing slash."""
  path = os.fspath(path)
  return path.rstrip('/') if is_url(path) else os.path.abspath(path)


def _epath(url):
  from etils import epath  # pylint: disable=import-outside-toplevel
  return epath.Path(url)


def exists(path):
  return _epath(path).exists() if is_url(path) else os.path.exists(path)


def isdir(path):
  """Folder test; for a URL, whether any object lies under the prefix."""
  if not is_url(path):
    return os.path.isdir(path)
  p = _epath(path)
  return p.is_dir() or (p.exists() and not p.is_file())


def isfile(path):
  return _epath(path).is_file() if is_url(path) else os.path.isfile(path)


def listdir(path):
  if not is_url(path):
    return os.listdir(path)
  return [p.name for p in _epath(path).iterdir()]


def read_text(path):
  if is_url(path):
    return _epath(path).read_text()
  with open(path, encoding='utf-8') as f:
    return f.read()


def write_text(path, text):
  """Writes a whole small file: atomically (rename) locally, one PUT to a bucket."""
  if is_url(path):
    write_bytes(path, text.encode('utf-8'))
    return
  from packnet_jax.utils import io as io_utils  # pylint: disable=import-outside-toplevel
  io_utils.atomic_write_text(path, text)


def write_bytes(url, data):
  """One object PUT to a bucket URL (replacing it)."""
  _epath(url).write_bytes(data)


def upload_file(local, url):
  """Copies one local file to `url` (replacing it)."""
  with open(local, 'rb') as f:
    write_bytes(url, f.read())


def rmtree(path):
  if is_url(path):
    p = _epath(path)
    if p.exists():
      p.rmtree()
    return
  import shutil  # pylint: disable=import-outside-toplevel
  shutil.rmtree(path, ignore_errors=True)


def _fsspec_options(name):
  """Short timeouts and few retries for the fsspec filesystem of scheme `name`."""
  if name == 's3':
    return {'config_kwargs': {'connect_timeout': CONNECT_TIMEOUT_S, 'read_timeout': 60,
                              'retries': {'max_attempts': RETRIES, 'mode': 'standard'}}}
  return {'retries': RETRIES, 'timeout': 60}


def _configure_fsspec(name):
  """Routes epath to fsspec for `name` and sets its timeouts (once per process)."""
  from packnet_jax.utils import _patches  # pylint: disable=import-outside-toplevel
  _patches.route_epath_to_fsspec()
  import fsspec  # pylint: disable=import-outside-toplevel
  key = 'gcs' if name == 'gs' else name
  for option, value in _fsspec_options(name).items():
    fsspec.config.conf.setdefault(key, {}).setdefault(option, value)


def _bucket(url):
  return os.fspath(url).split('://', 1)[1].split('/', 1)[0]


def use_bucket(url, name='--workdir'):
  """Makes `url` usable (packages, routing, orbax patch) and checks it answers; returns it.

  A local path is returned unchanged and nothing is imported.

  Raises:
    ValueError: the package for the scheme is missing, or the bucket cannot be
      reached (no credentials, no such bucket, endpoint down): one line naming `url`.
  """
  url = os.fspath(url)
  kind = scheme(url)
  if kind is None:
    return url
  package = SCHEMES[kind]
  try:
    __import__(package)
  except ImportError:
    raise ValueError(f'{name}: {url} needs the {package} package: pip install {package} '
                     '(or pip install -r requirements-cloud.txt)') from None
  if not _bucket(url):
    raise ValueError(f'{name}: {url} names no bucket ({kind}://BUCKET/PATH)')
  _configure_fsspec(kind)
  _check_reachable(url, kind, name)
  return url.rstrip('/')


def _check_reachable(url, kind, name):
  """One listing of the bucket, so that a bad URL fails now, with a reason, not in a retry loop."""
  bucket = _bucket(url)
  try:
    _epath(f'{kind}://{bucket}').exists()
    listing = _epath(f'{kind}://{bucket}/').iterdir()
    next(iter(listing), None)
  except FileNotFoundError:
    raise ValueError(f'{name}: {url}: bucket {bucket!r} does not exist') from None
  except PermissionError as e:
    raise ValueError(f'{name}: {url}: access denied ({_first_line(e)})') from None
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{name}: {url}: cannot reach the bucket ({type(e).__name__}: '
                     f'{_first_line(e)})') from None


def _first_line(error):
  text = str(error).strip().splitlines()
  return text[0][:300] if text else type(error).__name__
